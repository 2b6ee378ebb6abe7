package fs

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/uprobefs/uprobefs/core/manager"
)

// ControlDir is the name of the control directory at the mount root.
const ControlDir = ".uprobefs"

// mirrorTimeout is how long the kernel may cache mirror entries and
// attributes. Probe entries are never cached (timeout 0): they come and go.
const mirrorTimeout = time.Second

// Options configure the filesystem.
type Options struct {
	// Root is the directory the mount mirrors; "" means "/".
	Root string
	// MountPoint is the absolute, symlink-free path of the mount point. It
	// is hidden in the mirror, and absolute symlink targets are rewritten
	// to lie under it. Mount sets it.
	MountPoint string
	// Log receives debug messages; nil discards them.
	Log *slog.Logger
}

// filesys is the state shared by every node. All fields are immutable except
// selfDev.
type filesys struct {
	m    *manager.Manager
	root string // real directory mirrored, cleaned ("/")
	mnt  string // mount point, cleaned
	log  *slog.Logger
	uid  uint32 // owner shown for synthetic nodes
	gid  uint32
	// selfDev is st_dev of the mount itself (0 until known); lookups of
	// anything on it are ENOENT. Accessed atomically.
	selfDev atomic.Uint64
}

// NewRoot returns the root node of a uprobefs over m.
func NewRoot(m *manager.Manager, o Options) fusefs.InodeEmbedder {
	return &mirrorDir{node: node{fsys: newFilesys(m, o), mpath: "/"}, isRoot: true}
}

func newFilesys(m *manager.Manager, o Options) *filesys {
	root := o.Root
	if root == "" {
		root = "/"
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &filesys{
		m:    m,
		root: filepath.Clean(root),
		mnt:  filepath.Clean(o.MountPoint),
		log:  log,
		uid:  uint32(os.Getuid()),
		gid:  uint32(os.Getgid()),
	}
}

// real returns the real path of the mirror path mpath.
func (f *filesys) real(mpath string) string { return filepath.Join(f.root, mpath) }

// MountOptions configure Mount.
type MountOptions struct {
	Options
	// AllowOther lets other users use the mount (FUSE allow_other); then
	// the permission rules of package doc apply to them.
	AllowOther bool
	// Debug logs every FUSE request (go-fuse's debug output).
	Debug bool
}

// Mount mounts a uprobefs over m at mountpoint and starts serving it. As
// root it calls mount(2) itself (DirectMount); otherwise go-fuse runs
// fusermount3 (or fusermount), which must be installed. The caller unmounts
// with server.Unmount and waits with server.Wait.
func Mount(m *manager.Manager, mountpoint string, o MountOptions) (*fuse.Server, error) {
	mnt, err := filepath.Abs(mountpoint)
	if err == nil {
		mnt, err = filepath.EvalSymlinks(mnt)
	}
	if err != nil {
		return nil, fmt.Errorf("mount point: %w", err)
	}
	if st, err := os.Stat(mnt); err != nil {
		return nil, fmt.Errorf("mount point: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("mount point %s is not a directory", mnt)
	}
	o.MountPoint = mnt
	fsys := newFilesys(m, o.Options)
	root := &mirrorDir{node: node{fsys: fsys, mpath: "/"}, isRoot: true}
	opts := &fusefs.Options{
		// nil EntryTimeout and AttrTimeout: every node sets its own.
		MountOptions: fuse.MountOptions{
			FsName:             "uprobefs",
			Name:               "uprobefs",
			AllowOther:         o.AllowOther,
			DirectMountStrict:  os.Geteuid() == 0,
			DisableReadDirPlus: true,
			DisableXAttrs:      true,
			Debug:              o.Debug,
			MaxReadAhead:       0,
		},
		UID: fsys.uid,
		GID: fsys.gid,
	}
	srv, err := fusefs.Mount(mnt, root, opts)
	if err != nil {
		return nil, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(mnt, &st); err == nil {
		fsys.selfDev.Store(st.Dev)
	}
	return srv, nil
}

// node is what every node of the tree has: its path inside the mount, and
// refusals of every change (each node type overrides what it allows).
type node struct {
	fusefs.Inode
	fsys  *filesys
	mpath string // path inside the mount, "/" for the root
}

func (n *node) child(name string) string { return filepath.Join(n.mpath, name) }

// refuse logs a refused request of caller ctx on the node's path and returns
// errno.
func (n *node) refuse(ctx context.Context, path, input string, errno syscall.Errno, format string, args ...any) syscall.Errno {
	n.fsys.m.Refuse(callerOf(ctx), path, input, &manager.Error{Errno: errno, Reason: fmt.Sprintf(format, args...)})
	return errno
}

const readOnlyReason = "uprobefs changes only through writes into probes files and rmdir of probe directories"

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, n.refuse(ctx, n.child(name), "mkdir", syscall.EPERM, "mkdir is not allowed: register probes by writing into a file's probes (echo NAME=LOCATION > FILE/probes); %s", readOnlyReason)
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, n.refuse(ctx, n.child(name), "create", syscall.EPERM, "creating files is not allowed: %s", readOnlyReason)
}

func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, n.refuse(ctx, n.child(name), "mknod", syscall.EPERM, "mknod is not allowed: %s", readOnlyReason)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, n.refuse(ctx, n.child(name), "symlink "+target, syscall.EPERM, "symlink is not allowed: %s", readOnlyReason)
}

func (n *node) Link(ctx context.Context, target fusefs.InodeEmbedder, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, n.refuse(ctx, n.child(name), "link", syscall.EPERM, "link is not allowed: %s", readOnlyReason)
}

func (n *node) Rename(ctx context.Context, name string, newParent fusefs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return n.refuse(ctx, n.child(name), "rename to "+newName, syscall.EPERM, "rename is not allowed: %s", readOnlyReason)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	return n.refuse(ctx, n.child(name), "unlink", syscall.EPERM, "unlink is not allowed: %s", readOnlyReason)
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	return n.refuse(ctx, n.child(name), "rmdir", syscall.EPERM, "rmdir is allowed only on a probe directory (FILE/NAME): %s", readOnlyReason)
}

func (n *node) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return n.refuse(ctx, n.mpath, "setattr", syscall.EPERM, "changing attributes is not allowed: %s", readOnlyReason)
}

// synthAttr fills the attributes of a synthetic node.
func (n *node) synthAttr(out *fuse.Attr, mode uint32, uid uint32) {
	out.Mode = mode
	out.Uid = uid
	out.Gid = n.fsys.gid
	out.Nlink = 1
	if mode&syscall.S_IFDIR != 0 {
		out.Nlink = 2
	}
	out.Blksize = 4096
}

// inoOf is a stable inode number for the node of kind at path (with an
// identity): FNV-1a of the parts, never 0 or 1 (the root).
func inoOf(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	v := h.Sum64()
	if v < 2 {
		v += 2
	}
	return v
}

func u64(v uint64) string { return strconv.FormatUint(v, 16) }

// callerOf returns who makes the FUSE request of ctx; without one, nobody.
func callerOf(ctx context.Context) manager.Caller {
	if c, ok := fuse.FromContext(ctx); ok {
		return manager.Caller{Uid: c.Uid, Gid: c.Gid, Pid: int(c.Pid)}
	}
	return manager.Caller{Uid: 65534}
}

// errnoOf converts an error of the core into the errno FUSE returns: the
// one place where this happens.
func errnoOf(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e *manager.Error
	if errors.As(err, &e) {
		return e.Errno
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return syscall.EINTR
	}
	return syscall.EIO
}

// snapshot is an open file handle over content fixed at open.
type snapshot struct{ data []byte }

var _ = (fusefs.FileReader)((*snapshot)(nil))

func (s *snapshot) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(s.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), int64(len(s.data)))
	return fuse.ReadResultData(s.data[off:end]), 0
}

// openSnapshot opens a read-only file whose content is content(), refusing
// write access with EACCES.
func (n *node) openSnapshot(ctx context.Context, flags uint32, content func() string) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, n.refuse(ctx, n.mpath, "open for writing", syscall.EACCES, "%s is read-only", filepath.Base(n.mpath))
	}
	return &snapshot{data: []byte(content())}, fuse.FOPEN_DIRECT_IO, 0
}
