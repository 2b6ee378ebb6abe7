package fs

import (
	"context"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/uprobefs/uprobefs/core/manager"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// The probes of a file by its inode, for a file whose path no longer leads
// to it (removed, or renamed over; see core/manager's lifecycle.go):
//
//	.uprobefs/files                  DEV:INO STATE PATH, one line per probed file
//	.uprobefs/inodes/                one directory per probed file
//	.uprobefs/inodes/DEV:INO/probes  read: NAME LOCATION 0xOFFSET HITS MODE; write: -NAME lines
//	.uprobefs/inodes/DEV:INO/NAME/   the probe (hits, events, status); rmdir removes it

// InodesDir is the name of the directory of probed inodes in the control
// directory.
const InodesDir = "inodes"

// inodesDir is <mount>/.uprobefs/inodes.
type inodesDir struct{ node }

func (d *inodesDir) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.synthAttr(&out.Attr, syscall.S_IFDIR|0555, d.fsys.uid)
	return 0
}

func (d *inodesDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	key, ok := manager.ParseInodeName(name)
	if !ok || len(d.fsys.m.Probes(key)) == 0 {
		return nil, syscall.ENOENT
	}
	n := newInodeDir(d.fsys, d.child(name), key)
	n.synthAttr(&out.Attr, syscall.S_IFDIR|0755, d.fsys.uid)
	return d.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoOf("inode", name)}), 0
}

func (d *inodesDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	files := d.fsys.m.Files()
	list := make([]fuse.DirEntry, 0, len(files))
	for _, f := range files {
		name := manager.InodeName(f.Key)
		list = append(list, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR, Ino: inoOf("inode", name)})
	}
	return fusefs.NewListDirStream(list), 0
}

// inodeDir is .uprobefs/inodes/DEV:INO: the probes of one inode, as a
// binDir shows them, without its path: its probes file only removes, and
// lists to others only their own probes.
type inodeDir struct{ probeSet }

func newInodeDir(fsys *filesys, mpath string, key rmap.InodeKey) *inodeDir {
	return &inodeDir{probeSet{node: node{fsys: fsys, mpath: mpath}, key: key,
		probesIno: inoOf("inodeprobes", u64(key.Dev), u64(key.Ino)),
		write:     func(c manager.Caller, data []byte) error { return fsys.m.WriteInode(c, key, data) },
		listable:  ownProbes,
		remove:    func(c manager.Caller, name string) error { return fsys.m.RemoveInode(c, key, name) },
	}}
}

func (d *inodeDir) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if len(d.fsys.m.Probes(d.key)) == 0 {
		return syscall.ENOENT
	}
	d.synthAttr(&out.Attr, syscall.S_IFDIR|0755, d.fsys.uid)
	return 0
}

// ownProbes keeps, for a caller other than root, its own probes: the file
// may be gone, so its permissions cannot be asked; a probe the caller
// registered is of a file it could read.
func ownProbes(ctx context.Context, ps []*manager.Probe) ([]*manager.Probe, syscall.Errno) {
	c := callerOf(ctx)
	if c.Uid == 0 {
		return ps, 0
	}
	var own []*manager.Probe
	for _, p := range ps {
		if p.Owner == c.Uid {
			own = append(own, p)
		}
	}
	return own, 0
}
