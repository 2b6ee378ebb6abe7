package proc

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/rmap"
)

// detachProcess restores p's breakpoints, removes its VMAs and detaches its
// threads: each is detached at its next stop, which PTRACE_INTERRUPT
// brings about. Preconditions: on the tracer thread.
func (w *World) detachProcess(p *process) {
	p.detaching = true
	p.expect = time.Time{}
	w.removeMappings(p, func(*rmap.VMA) bool { return true })
	w.removeRbrk(p)
	w.removeSigHooks(p)
	for _, th := range p.threads {
		w.detachThread(th)
	}
}

// detachThread arranges for th to be detached: now if it is stopped,
// at its next stop otherwise.
func (w *World) detachThread(th *thread) {
	th.detach = true
	switch th.state {
	case stopped:
		w.detachNow(th, 0)
	case running, listening:
		if err := ptraceInterrupt(th.tid); err == unix.ESRCH {
			// Gone (its exit is reported) or not stopped yet.
		}
	}
}

// detachNow detaches a stopped thread, delivering sig.
func (w *World) detachNow(th *thread, sig int) {
	w.unhijack(th) // no return may reach the trampoline untraced
	if p := th.proc; p != nil && p.hasPokes() {
		w.runPokes(p, th) // restorations may be waiting for a stopped thread
	}
	if len(th.sigs) > 0 && sig == 0 {
		sig, th.sigs = th.sigs[0], th.sigs[1:]
	}
	for _, s := range th.sigs {
		unix.Tgkill(th.tgid, th.tid, unix.Signal(s))
	}
	th.sigs = nil
	if err := ptraceDetach(th.tid, sig); err != nil && err != unix.ESRCH {
		w.errorf("detach tid %d: %v", th.tid, err)
	}
	w.dropThread(th)
}

// detachWaiter is closed when none of its processes is traced any more.
type detachWaiter struct {
	procs []*process
	done  chan struct{}
}

// waitDetached returns a waiter for ps (closed at once if none).
func (w *World) waitDetached(ps []*process) *detachWaiter {
	wt := &detachWaiter{procs: ps, done: make(chan struct{})}
	w.waiters = append(w.waiters, wt)
	w.checkWaiters()
	return wt
}

func (w *World) checkWaiters() {
	keep := w.waiters[:0]
	for _, wt := range w.waiters {
		left := false
		for _, p := range wt.procs {
			if !p.gone {
				left = true
				break
			}
		}
		if left {
			keep = append(keep, wt)
		} else {
			close(wt.done)
		}
	}
	for i := len(keep); i < len(w.waiters); i++ {
		w.waiters[i] = nil
	}
	w.waiters = keep
}
