package fs

import (
	"context"
	"strings"
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
		n := &inodeProbesFile{node: node{fsys: d.fsys, mpath: d.child(name)}, key: d.key}
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

// inodeProbesFile is .uprobefs/inodes/DEV:INO/probes: read, the inode's
// probes; written, -NAME lines remove them (registering needs the path).
type inodeProbesFile struct {
	node
	key rmap.InodeKey // immutable
}

var (
	_ = (fusefs.NodeOpener)((*inodeProbesFile)(nil))
	_ = (fusefs.NodeWriter)((*inodeProbesFile)(nil))
	_ = (fusefs.NodeWritever)((*inodeProbesFile)(nil))
	_ = (fusefs.NodeGetattrer)((*inodeProbesFile)(nil))
	_ = (fusefs.NodeSetattrer)((*inodeProbesFile)(nil))
)

func (f *inodeProbesFile) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.synthAttr(&out.Attr, syscall.S_IFREG|0644, f.fsys.uid)
	return 0
}

// Setattr accepts what probesFile accepts (a truncation by ">", a touch).
func (f *inodeProbesFile) Setattr(ctx context.Context, fh fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if harmlessSetattr(in) {
		f.synthAttr(&out.Attr, syscall.S_IFREG|0644, f.fsys.uid)
		return 0
	}
	return f.node.Setattr(ctx, fh, in, out)
}

func (f *inodeProbesFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	h := &snapshot{}
	if flags&syscall.O_ACCMODE != syscall.O_WRONLY {
		var b strings.Builder
		for _, p := range f.fsys.m.Probes(f.key) {
			b.WriteString(p.ListingLine())
		}
		h.data = []byte(b.String())
	}
	return h, fuse.FOPEN_DIRECT_IO, 0
}

// Write applies one write(2) of -NAME lines as one all-or-nothing batch.
func (f *inodeProbesFile) Write(ctx context.Context, fh fusefs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if err := f.fsys.m.WriteInode(callerOf(ctx), f.key, data); err != nil {
		return 0, errnoOf(err)
	}
	return uint32(len(data)), 0
}

func (f *inodeProbesFile) Writev(ctx context.Context, fh fusefs.FileHandle, data [][]byte, off int64) (uint32, syscall.Errno) {
	var all []byte
	for _, d := range data {
		all = append(all, d...)
	}
	return f.Write(ctx, fh, all, off)
}
