package fs

import (
	"context"
	"strconv"
	"strings"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/uprobefs/uprobefs/core/manager"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// probeSet is what binDir and inodeDir share: the directory of one
// inode's probes, holding its probes file and one directory per probe. The
// two differ only in the fields below: where a write of the probes file
// goes, who may read its listing, how rmdir removes a probe, and the probes
// file's inode number.
type probeSet struct {
	node
	key       rmap.InodeKey // the file's identity when it was looked up; immutable
	probesIno uint64        // of the probes file
	write     func(c manager.Caller, data []byte) error
	listable  func(ctx context.Context, ps []*manager.Probe) ([]*manager.Probe, syscall.Errno)
	remove    func(c manager.Caller, name string) error
}

func (d *probeSet) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if name == "probes" {
		n := &probesFile{node: node{fsys: d.fsys, mpath: d.child(name)}, key: d.key, write: d.write, listable: d.listable}
		n.synthAttr(&out.Attr, syscall.S_IFREG|0644, d.fsys.uid)
		return d.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: d.probesIno}), 0
	}
	p := d.fsys.m.Probe(d.key, name)
	if p == nil {
		return nil, syscall.ENOENT
	}
	n := &probeDir{node: node{fsys: d.fsys, mpath: d.child(name)}, p: p}
	n.synthAttr(&out.Attr, syscall.S_IFDIR|0755, p.Owner)
	return d.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: probeIno(d.mpath, p)}), 0
}

func probeIno(mpath string, p *manager.Probe) uint64 {
	return inoOf("probe", mpath, u64(p.Key.Dev), u64(p.Key.Ino), strconv.FormatUint(p.ID, 10))
}

func (d *probeSet) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	ps := d.fsys.m.Probes(d.key)
	list := make([]fuse.DirEntry, 0, len(ps)+1)
	list = append(list, fuse.DirEntry{Name: "probes", Mode: syscall.S_IFREG, Ino: d.probesIno})
	for _, p := range ps {
		list = append(list, fuse.DirEntry{Name: p.Name, Mode: syscall.S_IFDIR, Ino: probeIno(d.mpath, p)})
	}
	return fusefs.NewListDirStream(list), 0
}

// Rmdir unregisters the probe name.
func (d *probeSet) Rmdir(ctx context.Context, name string) syscall.Errno {
	if name == "probes" {
		return d.refuse(ctx, d.child(name), "rmdir", syscall.ENOTDIR, "probes is a file, not a probe")
	}
	return errnoOf(d.remove(callerOf(ctx), name))
}

func (d *probeSet) Unlink(ctx context.Context, name string) syscall.Errno {
	if name != "probes" && d.fsys.m.Probe(d.key, name) != nil {
		return d.refuse(ctx, d.child(name), "unlink", syscall.EISDIR, "%s is a probe directory: remove it with rmdir (or rm -r)", name)
	}
	return d.node.Unlink(ctx, name)
}

// binDir is a real regular file, shown as the directory of its probes.
type binDir struct{ probeSet }

// newBinDir is the directory of the probes of the regular file at mpath,
// whose identity is key: its probes file registers and unregisters by path,
// and lists to who may read the file.
func newBinDir(fsys *filesys, mpath string, key rmap.InodeKey) *binDir {
	d := &binDir{}
	d.probeSet = probeSet{node: node{fsys: fsys, mpath: mpath}, key: key,
		probesIno: inoOf("probes", mpath, u64(key.Dev), u64(key.Ino)),
		write:     func(c manager.Caller, data []byte) error { return fsys.m.Write(c, d.real(), data) },
		listable: func(ctx context.Context, ps []*manager.Probe) ([]*manager.Probe, syscall.Errno) {
			return ps, d.checkAccess(ctx, 4) // only to who may read the file
		},
		remove: func(c manager.Caller, name string) error { return fsys.m.Remove(c, d.real(), name) },
	}
	return d
}

func (d *binDir) real() string { return d.fsys.real(d.mpath) }

func (d *binDir) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Stat(d.real(), &st); err != nil {
		return err.(syscall.Errno)
	}
	out.Attr.FromStat(&st)
	binAttr(&out.Attr)
	return 0
}

// probesFile is FILE/probes: written to register and unregister, read for
// the list of the file's probes; and .uprobefs/inodes/DEV:INO/probes
// (inodes.go), whose writes only remove. The two differ in where a write
// goes and who may read the listing.
type probesFile struct {
	node
	key rmap.InodeKey // immutable
	// write applies one write(2) as one all-or-nothing batch.
	write func(c manager.Caller, data []byte) error
	// listable refuses a caller who may not read the listing (it shows
	// symbol offsets), or keeps only the probes it may see.
	listable func(ctx context.Context, ps []*manager.Probe) ([]*manager.Probe, syscall.Errno)
}

func (f *probesFile) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.synthAttr(&out.Attr, syscall.S_IFREG|0644, f.fsys.uid)
	return 0
}

// Setattr accepts a truncation (O_TRUNC, ">") and does nothing: truncation
// never deletes probes. Any other change is refused.
func (f *probesFile) Setattr(ctx context.Context, fh fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if harmlessSetattr(in) {
		f.synthAttr(&out.Attr, syscall.S_IFREG|0644, f.fsys.uid)
		return 0
	}
	return f.node.Setattr(ctx, fh, in, out)
}

// harmlessSetattr reports whether in is a truncation to 0 (O_TRUNC, ">")
// or a touch, which a probes file accepts and ignores.
func harmlessSetattr(in *fuse.SetAttrIn) bool {
	if sz, ok := in.GetSize(); ok && sz == 0 {
		if _, ok := in.GetMode(); !ok {
			if _, ok := in.GetUID(); !ok {
				return true
			}
		}
	}
	if _, ok := in.GetATime(); ok {
		if _, ok := in.GetSize(); !ok {
			return true // touch
		}
	}
	return false
}

func (f *probesFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	h := &snapshot{}
	if flags&syscall.O_ACCMODE != syscall.O_WRONLY {
		ps, errno := f.listable(ctx, f.fsys.m.Probes(f.key))
		if errno != 0 {
			return nil, 0, errno
		}
		var b strings.Builder
		for _, p := range ps {
			b.WriteString(p.ListingLine())
		}
		h.data = []byte(b.String())
	}
	return h, fuse.FOPEN_DIRECT_IO, 0
}

func (f *probesFile) Write(ctx context.Context, fh fusefs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if err := f.write(callerOf(ctx), data); err != nil {
		return 0, errnoOf(err)
	}
	return uint32(len(data)), 0
}

func (f *probesFile) Writev(ctx context.Context, fh fusefs.FileHandle, data [][]byte, off int64) (uint32, syscall.Errno) {
	var all []byte
	for _, d := range data {
		all = append(all, d...)
	}
	return f.Write(ctx, fh, all, off)
}
