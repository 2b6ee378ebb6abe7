package fs

import fusefs "github.com/hanwen/go-fuse/v2/fs"

// The operations each node type serves, checked here at compile time: a
// method that lost its go-fuse signature would otherwise silently fall back
// to node's refusal or to go-fuse's default.
type (
	// refuser refuses every change with a reason (node: each node type
	// overrides what it allows).
	refuser interface {
		fusefs.NodeMkdirer
		fusefs.NodeCreater
		fusefs.NodeMknoder
		fusefs.NodeSymlinker
		fusefs.NodeLinker
		fusefs.NodeRenamer
		fusefs.NodeUnlinker
		fusefs.NodeRmdirer
		fusefs.NodeSetattrer
	}
	// dir is a directory: looked up, listed and stat'ed.
	dir interface {
		fusefs.NodeLookuper
		fusefs.NodeReaddirer
		fusefs.NodeGetattrer
	}
	// probesDir is the directory of one inode's probes (probeSet): rmdir
	// of an entry unregisters that probe, unlink of one says to use rmdir.
	probesDir interface {
		dir
		fusefs.NodeRmdirer
		fusefs.NodeUnlinker
	}
	// snapshotFile is a read-only file whose content is fixed at open.
	snapshotFile interface {
		fusefs.NodeOpener
		fusefs.NodeGetattrer
	}
	// writableFile is a file whose writes are requests (probesFile); a
	// truncation or touch is accepted and does nothing.
	writableFile interface {
		snapshotFile
		fusefs.NodeWriter
		fusefs.NodeWritever
		fusefs.NodeSetattrer
	}
)

var (
	_ refuser = (*node)(nil)

	_ snapshotFile = (*hitsFile)(nil) // probe.go
	_ snapshotFile = (*statusFile)(nil)
	_ snapshotFile = (*eventsFile)(nil)
	_ snapshotFile = (*latencyFile)(nil)

	_ dir                 = (*mirrorDir)(nil) // mirror.go
	_ fusefs.NodeCreater  = (*mirrorDir)(nil) // "> DIR/probes": EISDIR
	_ fusefs.NodeStatfser = (*mirrorDir)(nil)

	_ fusefs.NodeReadlinker = (*mirrorLink)(nil)
	_ fusefs.NodeGetattrer  = (*mirrorLink)(nil)

	_ probesDir    = (*binDir)(nil) // bin.go
	_ writableFile = (*probesFile)(nil)

	_ dir          = (*controlDir)(nil) // control.go
	_ snapshotFile = (*controlFile)(nil)

	_ dir       = (*inodesDir)(nil) // inodes.go
	_ probesDir = (*inodeDir)(nil)
)
