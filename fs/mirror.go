package fs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/manager"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// mirrorDir is a real directory (or the root).
type mirrorDir struct {
	node
	isRoot bool
}

// hidden reports whether the real path must not appear in the mirror: the
// mount point itself.
func (d *mirrorDir) hidden(real string) bool { return real == d.fsys.mnt }

func (d *mirrorDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if d.isRoot && name == ControlDir {
		n := &controlDir{node: node{fsys: d.fsys, mpath: "/" + ControlDir}}
		n.synthAttr(&out.Attr, syscall.S_IFDIR|0555, d.fsys.uid)
		return d.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoOf("control")}), 0
	}
	mpath := d.child(name)
	real := d.fsys.real(mpath)
	if d.hidden(real) {
		return nil, syscall.ENOENT
	}
	if errno := d.checkAccess(ctx, 1); errno != 0 {
		return nil, errno // no search permission on the real directory
	}
	var st syscall.Stat_t
	lstat := syscall.Lstat
	if isProcRoot(mpath) {
		// /proc/PID/root is a directory here, not a link: the paths
		// below it are resolved by the kernel in that process's root
		// and mount namespace (a container's files, by their own
		// inodes).
		lstat = syscall.Stat
	}
	if err := lstat(real, &st); err != nil {
		if name == "probes" && err == syscall.ENOENT {
			// DIR/probes of a directory: EISDIR for every access (open
			// with or without O_CREAT, stat), as documented.
			return nil, d.refuse(ctx, mpath, "lookup", syscall.EISDIR,
				"%s is a directory: only regular files (ELF executables and libraries) have probes", d.fsys.real(d.mpath))
		}
		return nil, err.(syscall.Errno)
	}
	if self := d.fsys.selfDev.Load(); self != 0 && st.Dev == self {
		return nil, syscall.ENOENT
	}
	out.SetEntryTimeout(mirrorTimeout)
	out.SetAttrTimeout(mirrorTimeout)
	out.Attr.FromStat(&st)
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		n := &mirrorDir{node: node{fsys: d.fsys, mpath: mpath}}
		return d.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoOf("dir", mpath)}), 0
	case syscall.S_IFREG:
		key := rmap.InodeKey{Dev: st.Dev, Ino: st.Ino}
		n := newBinDir(d.fsys, mpath, key)
		binAttr(&out.Attr)
		// The probe list changes under it: do not cache.
		out.SetEntryTimeout(0)
		out.SetAttrTimeout(0)
		return d.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: binIno(mpath, key)}), 0
	case syscall.S_IFLNK:
		n := &mirrorLink{node: node{fsys: d.fsys, mpath: mpath}}
		if t, err := n.target(); err == nil {
			out.Attr.Size = uint64(len(t))
		}
		return d.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFLNK, Ino: inoOf("link", mpath)}), 0
	}
	return nil, syscall.ENOENT
}

func binIno(mpath string, key rmap.InodeKey) uint64 {
	return inoOf("bin", mpath, u64(key.Dev), u64(key.Ino))
}

// binAttr turns the attributes of a regular file into those of the directory
// that shows its probes.
func binAttr(a *fuse.Attr) {
	a.Mode = syscall.S_IFDIR | 0755
	a.Nlink = 2
	a.Size = 0
	a.Blocks = 0
}

func (d *mirrorDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	if errno := d.checkAccess(ctx, 4); errno != 0 {
		return nil, errno // no read permission on the real directory
	}
	real := d.fsys.real(d.mpath)
	ents, err := os.ReadDir(real)
	if err != nil {
		return nil, errnoOf(err)
	}
	list := make([]fuse.DirEntry, 0, len(ents)+1)
	if d.isRoot {
		list = append(list, fuse.DirEntry{Name: ControlDir, Mode: syscall.S_IFDIR, Ino: inoOf("control")})
	}
	for _, e := range ents {
		name := e.Name()
		mpath := d.child(name)
		if d.hidden(d.fsys.real(mpath)) {
			continue
		}
		switch t := e.Type(); {
		case t.IsDir():
			list = append(list, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR, Ino: inoOf("dir", mpath)})
		case t&os.ModeSymlink != 0:
			list = append(list, fuse.DirEntry{Name: name, Mode: syscall.S_IFLNK, Ino: inoOf("link", mpath)})
		case t.IsRegular():
			info, err := e.Info()
			if err != nil {
				continue
			}
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok {
				continue
			}
			list = append(list, fuse.DirEntry{Name: name, Mode: syscall.S_IFDIR, Ino: binIno(mpath, rmap.InodeKey{Dev: st.Dev, Ino: st.Ino})})
		}
	}
	return fusefs.NewListDirStream(list), 0
}

func (d *mirrorDir) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Lstat(d.fsys.real(d.mpath), &st); err != nil {
		return err.(syscall.Errno)
	}
	out.Attr.FromStat(&st)
	out.SetTimeout(mirrorTimeout)
	return 0
}

// Create refuses with EISDIR for "probes" (the shell's "> DIR/probes" on a
// directory: only regular files have probes) and EPERM otherwise.
func (d *mirrorDir) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	if name == "probes" {
		return nil, nil, 0, d.refuse(ctx, d.child(name), "create", syscall.EISDIR,
			"%s is a directory: only regular files (ELF executables and libraries) have probes", d.fsys.real(d.mpath))
	}
	return d.node.Create(ctx, name, flags, mode, out)
}

func (d *mirrorDir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	out.NameLen = 255
	out.Bsize = 4096
	return 0
}

// mirrorLink is a real symlink.
type mirrorLink struct{ node }

// target returns the symlink's target as seen in the mount: a relative
// target that stays inside the mirror as it is, an absolute one (or one that
// climbs above the mirror's root) rewritten under the mount point, so that
// no symlink leads out of the mount.
func (l *mirrorLink) target() (string, error) {
	t, err := os.Readlink(l.fsys.real(l.mpath))
	if err != nil {
		return "", err
	}
	abs := filepath.IsAbs(t)
	if !abs {
		depth := strings.Count(strings.Trim(filepath.Dir(l.mpath), "/"), "/")
		if filepath.Dir(l.mpath) != "/" {
			depth++
		}
		escapes := false
		for _, c := range strings.Split(t, "/") {
			switch c {
			case "..":
				depth--
			case ".", "":
			default:
				depth++
			}
			if depth < 0 {
				escapes = true
				break
			}
		}
		if !escapes {
			return t, nil
		}
		t = filepath.Join(filepath.Dir(l.mpath), t) // Clean stops at "/"
	}
	if abs {
		// Inside a process's root (a container), an absolute target is
		// in that root.
		return filepath.Join(l.fsys.mnt, procRootOf(l.mpath), filepath.Clean(t)), nil
	}
	return filepath.Join(l.fsys.mnt, filepath.Clean(t)), nil
}

// isProcRoot reports whether mpath is /proc/PID/root.
func isProcRoot(mpath string) bool {
	rest, ok := strings.CutPrefix(mpath, "/proc/")
	if !ok {
		return false
	}
	pid, tail, ok := strings.Cut(rest, "/")
	if !ok || tail != "root" || pid == "" {
		return false
	}
	for _, c := range pid {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// procRootOf returns the /proc/PID/root that mpath is below, or "".
func procRootOf(mpath string) string {
	parts := strings.SplitN(mpath, "/", 5) // "", "proc", PID, "root", rest
	if len(parts) >= 4 && isProcRoot("/"+parts[1]+"/"+parts[2]+"/"+parts[3]) {
		return "/" + parts[1] + "/" + parts[2] + "/" + parts[3]
	}
	return ""
}

func (l *mirrorLink) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t, err := l.target()
	if err != nil {
		return nil, errnoOf(err)
	}
	return []byte(t), 0
}

func (l *mirrorLink) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Lstat(l.fsys.real(l.mpath), &st); err != nil {
		return err.(syscall.Errno)
	}
	out.Attr.FromStat(&st)
	if t, err := l.target(); err == nil {
		out.Attr.Size = uint64(len(t))
	}
	out.SetTimeout(mirrorTimeout)
	return 0
}

// checkAccess refuses (EACCES) a caller other than root without the access
// want (manager.MayAccess) to the real file of n: the mirror shows nobody
// more than the caller could see without it, though the daemon runs as
// root.
func (n *node) checkAccess(ctx context.Context, want uint32) syscall.Errno {
	c := callerOf(ctx)
	if c.Uid == 0 {
		return 0
	}
	var st unix.Stat_t
	if err := unix.Stat(n.fsys.real(n.mpath), &st); err != nil {
		return errnoOf(err)
	}
	if !manager.MayAccess(c, &st, want) {
		return syscall.EACCES
	}
	return 0
}
