package fs

import (
	"context"
	"strings"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/uprobefs/uprobefs/core/manager"
)

// controlDir is <mount>/.uprobefs.
type controlDir struct{ node }

// controlFiles are the files of the control directory and their content for
// a caller.
var controlFiles = map[string]func(m *manager.Manager, c manager.Caller) string{
	"probes": func(m *manager.Manager, c manager.Caller) string {
		var b strings.Builder
		for _, p := range m.All() {
			b.WriteString(p.ControlLine())
		}
		return b.String()
	},
	"stats": func(m *manager.Manager, c manager.Caller) string { return m.Stats().Text() },
	"files": func(m *manager.Manager, c manager.Caller) string {
		var b strings.Builder
		for _, f := range m.Files() {
			b.WriteString(f.Line())
		}
		return b.String()
	},
	"errors": func(m *manager.Manager, c manager.Caller) string {
		var b strings.Builder
		for _, e := range m.Errors() {
			if c.Uid == 0 || e.Caller.Uid == c.Uid {
				b.WriteString(e.Line())
			}
		}
		return b.String()
	},
}

var controlNames = []string{"errors", "files", "probes", "stats"}

func (d *controlDir) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.synthAttr(&out.Attr, syscall.S_IFDIR|0555, d.fsys.uid)
	return 0
}

func (d *controlDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if name == InodesDir {
		n := &inodesDir{node: node{fsys: d.fsys, mpath: d.child(name)}}
		n.synthAttr(&out.Attr, syscall.S_IFDIR|0555, d.fsys.uid)
		return d.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: inoOf("control", name)}), 0
	}
	content := controlFiles[name]
	if content == nil {
		return nil, syscall.ENOENT
	}
	n := &controlFile{node: node{fsys: d.fsys, mpath: d.child(name)}, content: content}
	n.synthAttr(&out.Attr, syscall.S_IFREG|0444, d.fsys.uid)
	return d.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: inoOf("control", name)}), 0
}

func (d *controlDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	list := make([]fuse.DirEntry, 0, len(controlNames)+1)
	for _, name := range controlNames {
		list = append(list, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG, Ino: inoOf("control", name)})
	}
	list = append(list, fuse.DirEntry{Name: InodesDir, Mode: syscall.S_IFDIR, Ino: inoOf("control", InodesDir)})
	return fusefs.NewListDirStream(list), 0
}

// controlFile is a read-only file of the control directory.
type controlFile struct {
	node
	content func(m *manager.Manager, c manager.Caller) string
}

func (f *controlFile) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	f.synthAttr(&out.Attr, syscall.S_IFREG|0444, f.fsys.uid)
	return 0
}

func (f *controlFile) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	c := callerOf(ctx)
	return f.openSnapshot(ctx, flags, func() string { return f.content(f.fsys.m, c) })
}
