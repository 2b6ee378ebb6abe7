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
//	.uprobefs/inodes/DEV:INO/probes  read: NAME LOCATION 0xOFFSET HITS; write: -NAME lines
//	.uprobefs/inodes/DEV:INO/NAME/   the probe (hits, events, status); rmdir removes it

// InodesDir is the name of the directory of probed inodes in the control
// directory.
const InodesDir = "inodes"

// inodesDir is <mount>/.uprobefs/inodes.
type inodesDir struct{ node }

var (
	_ = (fusefs.NodeLookuper)((*inodesDir)(nil))
	_ = (fusefs.NodeReaddirer)((*inodesDir)(nil))
	_ = (fusefs.NodeGetattrer)((*inodesDir)(nil))
)

func (d *inodesDir) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.synthAttr(&out.Attr, syscall.S_IFDIR|0555, d.fsys.uid)
	return 0
}

func (d *inodesDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	key, ok := manager.ParseInodeName(name)
	if !ok || len(d.fsys.m.Probes(key)) == 0 {
		return nil, syscall.ENOENT
	}
	n := &inodeDir{node: node{fsys: d.fsys, mpath: d.child(name)}, key: key}
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
// binDir shows them, without its path.
type inodeDir struct {
	node
	key rmap.InodeKey // immutable
}

var (
	_ = (fusefs.NodeLookuper)((*inodeDir)(nil))
	_ = (fusefs.NodeReaddirer)((*inodeDir)(nil))
	_ = (fusefs.NodeGetattrer)((*inodeDir)(nil))
	_ = (fusefs.NodeRmdirer)((*inodeDir)(nil))
	_ = (fusefs.NodeUnlinker)((*inodeDir)(nil))
)

func (d *inodeDir) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if len(d.fsys.m.Probes(d.key)) == 0 {
		return syscall.ENOENT
	}
	d.synthAttr(&out.Attr, syscall.S_IFDIR|0755, d.fsys.uid)
	return 0
}

func (d *inodeDir) probesIno() uint64 { return inoOf("inodeprobes", u64(d.key.Dev), u64(d.key.Ino)) }

func (d *inodeDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if name == "probes" {
		n := &probesFile{node: node{fsys: d.fsys, mpath: d.child(name)}, key: d.key,
			write:    func(c manager.Caller, data []byte) error { return d.fsys.m.WriteInode(c, d.key, data) },
			listable: ownProbes}
		n.synthAttr(&out.Attr, syscall.S_IFREG|0644, d.fsys.uid)
		return d.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: d.probesIno()}), 0
	}
	p := d.fsys.m.Probe(d.key, name)
	if p == nil {
		return nil, syscall.ENOENT
	}
	n := &probeDir{node: node{fsys: d.fsys, mpath: d.child(name)}, p: p}
	n.synthAttr(&out.Attr, syscall.S_IFDIR|0755, p.Owner)
	return d.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: probeIno(d.mpath, p)}), 0
}

func (d *inodeDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	ps := d.fsys.m.Probes(d.key)
	list := make([]fuse.DirEntry, 0, len(ps)+1)
	list = append(list, fuse.DirEntry{Name: "probes", Mode: syscall.S_IFREG, Ino: d.probesIno()})
	for _, p := range ps {
		list = append(list, fuse.DirEntry{Name: p.Name, Mode: syscall.S_IFDIR, Ino: probeIno(d.mpath, p)})
	}
	return fusefs.NewListDirStream(list), 0
}

// Rmdir unregisters the probe name of the inode.
func (d *inodeDir) Rmdir(ctx context.Context, name string) syscall.Errno {
	if name == "probes" {
		return d.refuse(ctx, d.child(name), "rmdir", syscall.ENOTDIR, "probes is a file, not a probe")
	}
	return errnoOf(d.fsys.m.RemoveInode(callerOf(ctx), d.key, name))
}

func (d *inodeDir) Unlink(ctx context.Context, name string) syscall.Errno {
	if name != "probes" && d.fsys.m.Probe(d.key, name) != nil {
		return d.refuse(ctx, d.child(name), "unlink", syscall.EISDIR, "%s is a probe directory: remove it with rmdir (or rm -r)", name)
	}
	return d.node.Unlink(ctx, name)
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
