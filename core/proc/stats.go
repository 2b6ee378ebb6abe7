package proc

import (
	"sync/atomic"
	"time"
)

// Stats are the world's counters (core/manager's WorldStats).
//
// The Exec fields tell where the time goes that a new image of a watched
// file is held by the tracer between its execve and its main (the exec
// hold; the kernel's uprobes add almost nothing there): ExecFan is the time
// its exec spent blocked in the fanotify permission event, over ExecFans
// events (the tracer's wake-up and the seizure); ExecAttach the handling
// of its exec event, over Execs images traced (the process built, its maps
// read, the breakpoints written); ExecLoader the handling of the loader's
// r_brk traps until the libraries are in (ExecLoaderTraps traps); and
// ExecSwitch the first switch of its sites to jump sites while the loader
// still runs (ExecSwitches switches: threads stopped, a jump region mapped
// by injected system calls, the jmps written). Each is the tracer's own
// time in the step; the waits between them (a trap reaching the tracer,
// its wake-ups) are not in any of them.
type Stats = struct {
	Processes, Threads, Breakpoints, Hits, Errors  int
	Execs, ExecFans, ExecLoaderTraps, ExecSwitches int
	ExecFan, ExecAttach, ExecLoader, ExecSwitch    time.Duration
}

// execProfile accumulates the Exec fields of Stats (any goroutine).
type execProfile struct {
	fans, execs, traps, switches  atomic.Int64
	fan, attach, loader, switched atomic.Int64 // nanoseconds
}

// spent adds the time since t0 to total and one to n.
func spent(n, total *atomic.Int64, t0 time.Time) {
	n.Add(1)
	total.Add(int64(time.Since(t0)))
}

// Stats returns the world's counters: traced processes and threads,
// breakpoints in place, hits stepped over, errors, and the exec profile.
//
// The counts are taken on the tracer thread: every event reaped before the
// call is accounted for (a traced process whose parent saw it exit is gone).
func (w *World) Stats() Stats {
	var s Stats
	read := func() {
		x := &w.execProf
		s = Stats{
			Processes: int(w.nProcs.Load()),
			Threads:   int(w.nThreads.Load()),
			Hits:      int(w.nHits.Load() + w.nJumpHits.Load()),
			Errors:    int(w.nErrors.Load()),

			Execs: int(x.execs.Load()), ExecFans: int(x.fans.Load()),
			ExecLoaderTraps: int(x.traps.Load()), ExecSwitches: int(x.switches.Load()),
			ExecFan: time.Duration(x.fan.Load()), ExecAttach: time.Duration(x.attach.Load()),
			ExecLoader: time.Duration(x.loader.Load()), ExecSwitch: time.Duration(x.switched.Load()),
		}
	}
	if err := w.t.do(func() {
		read()
		for _, p := range w.procs {
			s.Breakpoints += int(p.mm.UprobesCount())
		}
	}); err != nil {
		read()
	}
	return s
}
