package fs

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/uprobefs/uprobefs/core/manager"
)

// probeDir is FILE/NAME: one probe.
type probeDir struct {
	node
	p *manager.Probe // immutable: a re-registered name is a new probeDir
}

var (
	_ = (fusefs.NodeLookuper)((*probeDir)(nil))
	_ = (fusefs.NodeReaddirer)((*probeDir)(nil))
	_ = (fusefs.NodeGetattrer)((*probeDir)(nil))
	_ = (fusefs.NodeUnlinker)((*probeDir)(nil))
)

// probeFiles are the files of a probe directory; a return probe also has
// latency.
var probeFiles = []string{"events", "hits", "status", "latency"}

// files returns the files of d's probe.
func (d *probeDir) files() []string {
	if d.p.Return {
		return probeFiles
	}
	return probeFiles[:3]
}

// live reports whether the probe is still registered.
func (d *probeDir) live() bool { return d.fsys.m.Probe(d.p.Key, d.p.Name) == d.p }

func (d *probeDir) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if !d.live() {
		return syscall.ENOENT
	}
	d.synthAttr(&out.Attr, syscall.S_IFDIR|0755, d.p.Owner)
	out.Attr.SetTimes(nil, &d.p.Created, &d.p.Created)
	return 0
}

func (d *probeDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if !d.live() {
		return nil, syscall.ENOENT
	}
	ino := inoOf("probefile", d.mpath, strconv.FormatUint(d.p.ID, 10), name)
	var ops fusefs.InodeEmbedder
	pf := func() probeFile { return probeFile{node: node{fsys: d.fsys, mpath: d.child(name)}, p: d.p} }
	switch name {
	case "hits":
		ops = &hitsFile{pf()}
	case "status":
		ops = &statusFile{pf()}
	case "events":
		ops = &eventsFile{pf()}
	case "latency":
		if !d.p.Return {
			return nil, syscall.ENOENT
		}
		ops = &latencyFile{pf()}
	default:
		return nil, syscall.ENOENT
	}
	d.synthAttr(&out.Attr, syscall.S_IFREG|0444, d.p.Owner)
	return d.NewInode(ctx, ops, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: ino}), 0
}

func (d *probeDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	if !d.live() {
		return nil, syscall.ENOENT
	}
	list := make([]fuse.DirEntry, 0, len(probeFiles))
	for _, name := range d.files() {
		list = append(list, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG, Ino: inoOf("probefile", d.mpath, strconv.FormatUint(d.p.ID, 10), name)})
	}
	return fusefs.NewListDirStream(list), 0
}

// Unlink of a probe's own files succeeds and does nothing, so that "rm -r
// NAME" gets to its rmdir, which unregisters.
func (d *probeDir) Unlink(ctx context.Context, name string) syscall.Errno {
	for _, f := range probeFiles {
		if name == f {
			return 0
		}
	}
	return d.node.Unlink(ctx, name)
}

// probeFile is what hits, status, events and latency share (each embeds
// it and adds its Open).
type probeFile struct {
	node
	p *manager.Probe
}

func (f *probeFile) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.synthAttr(&out.Attr, syscall.S_IFREG|0444, f.p.Owner)
	return 0
}

type hitsFile struct{ probeFile }

func (f *hitsFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	return f.openSnapshot(ctx, flags, func() string { return strconv.FormatUint(f.p.Hits(), 10) + "\n" })
}

type statusFile struct{ probeFile }

func (f *statusFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	c := callerOf(ctx)
	return f.openSnapshot(ctx, flags, func() string {
		return f.p.GoneLine(ControlDir+"/"+InodesDir) + f.fsys.m.Status(f.p, c)
	})
}

type eventsFile struct{ probeFile }

// Open subscribes to the probe's events: the reader gets every hit from now
// on. O_NONBLOCK must be given at open (FUSE does not see a later fcntl).
func (f *eventsFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, f.refuse(ctx, f.mpath, "open for writing", syscall.EACCES, "events is read-only")
	}
	h := &eventsHandle{sub: f.p.Subscribe(callerOf(ctx)), nonblock: flags&syscall.O_NONBLOCK != 0}
	return h, fuse.FOPEN_DIRECT_IO, 0
}

// eventsHandle is one open events file: one subscription.
type eventsHandle struct {
	nonblock bool // immutable
	// mu serialises reads of the handle; sub is protected by mu.
	mu  sync.Mutex
	sub *manager.Subscription
}

var (
	_ = (fusefs.FileReader)((*eventsHandle)(nil))
	_ = (fusefs.FileReleaser)((*eventsHandle)(nil))
)

func (h *eventsHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n, err := h.sub.Read(ctx, dest, h.nonblock)
	switch {
	case errors.Is(err, manager.ErrWouldBlock):
		return nil, syscall.EAGAIN
	case err != nil:
		return nil, errnoOf(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *eventsHandle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sub.Close()
	return 0
}

// latencyFile is a return probe's histogram of durations (bpftrace's
// hist() layout, then count, min, mean and max).
type latencyFile struct{ probeFile }

func (f *latencyFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	return f.openSnapshot(ctx, flags, f.p.Latency)
}
