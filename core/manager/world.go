package manager

import (
	"time"

	"github.com/uprobefs/uprobefs/core/rmap"
)

// World is what the Manager needs from the world under the engine (the real
// ptrace world of core/proc, or the simulated one of core/sim).
type World interface {
	// Watch makes the world find every process that maps in (and every
	// process that maps it later) and feed its VMAs to the engine. The
	// Manager calls it before the first Register on in.
	Watch(in *rmap.Inode, path string) error
	// Unwatch is called after the last Unregister on in.
	Unwatch(in *rmap.Inode)
	// Close restores and detaches everything.
	Close() error
}

// Skip is a process that maps a watched inode but is not traced, and why.
// It is an alias of an unnamed struct type so that a world (core/proc)
// implements WorldSkipper without importing this package: its own alias of
// the same struct is the same type.
type Skip = struct {
	Pid    int
	Reason string
}

// WorldStats are the world's counters, shown in the control directory (an
// alias of an unnamed struct type, as Skip).
type WorldStats = struct {
	Processes, Threads, Breakpoints, Hits, Errors int
	// Exec, ExecFan, ...: where the exec holds of new images went (see
	// core/proc's Stats).
	Execs, ExecFans, ExecLoaderTraps, ExecSwitches int
	ExecFan, ExecAttach, ExecLoader, ExecSwitch    time.Duration
}

// WorldSkipper is implemented by worlds that can tell which processes that
// map an inode they could not trace. Optional.
type WorldSkipper interface {
	Skipped(in *rmap.Inode) []Skip
}

// WorldJumps is implemented by worlds that may hit a breakpoint without a
// trap (core/proc's jump sites). SiteMode says how the breakpoint the
// engine has at vaddr of mm is hit: "jump", or "trap: REASON" ("": the
// world does not know). It is called with mm.MmapSem held for reading.
// Optional.
type WorldJumps interface {
	SiteMode(mm *rmap.MM, vaddr uint64) string
}

// WorldStatser is implemented by worlds that keep statistics. Optional.
type WorldStatser interface {
	Stats() WorldStats
}
