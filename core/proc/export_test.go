package proc

import (
	"fmt"
	"strings"
)

// allListening reports whether every traced thread of pid is in a
// group-stop kept with PTRACE_LISTEN.
func (w *World) allListening(pid int) bool {
	ok := false
	w.t.do(func() {
		p := w.procs[pid]
		if p == nil || len(p.threads) == 0 {
			return
		}
		for _, th := range p.threads {
			if th.state != listening {
				return
			}
		}
		ok = true
	})
	return ok
}

// debugState describes every thread and process the world still tracks,
// for a test that finds some left.
func (w *World) debugState() string {
	var b strings.Builder
	w.t.do(func() {
		for tid, th := range w.threads {
			pid := 0
			if th.proc != nil {
				pid = th.proc.pid
			}
			fmt.Fprintf(&b, "thread %d tgid %d proc %d state %d detach %v pend %v follow %d step %v dead %v sigs %v\n",
				tid, th.tgid, pid, th.state, th.detach, th.pend != nil, th.follow, th.step != nil, th.dead, th.sigs)
		}
		for pid, p := range w.procs {
			fmt.Fprintf(&b, "process %d: %d threads, detaching %v gone %v\n", pid, len(p.threads), p.detaching, p.gone)
		}
		fmt.Fprintf(&b, "orphans %d, reapable %d\n", len(w.orphans), len(w.reapable))
	})
	return b.String()
}
