package proc

import (
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// SIGTRAP's disposition and mask, kept as the program set them.
//
// A hit is an int3, and the kernel raises its SIGTRAP with force_sig: when
// the thread blocks SIGTRAP, or the process ignores it, the kernel first
// resets the disposition to SIG_DFL (losing the program's handler) and
// unblocks SIGTRAP in the thread's mask; then the tracer sees the signal
// and suppresses it, but the side effects stay: the program's own int3
// later kills it, sigprocmask shows SIGTRAP unblocked. The kernel's own
// uprobes handle the int3 before any signal and have no such effect.
//
// So the world keeps, per thread group, the disposition it knew last
// (sigTrap): SIG_DFL, SIG_IGN (from /proc/PID/status SigIgn), or a handler,
// whose struct sigaction it reads by injecting rt_sigaction(SIGTRAP, NULL,
// &old) at attach, before any breakpoint is in (handlers are reset by exec,
// so an exec'd image needs no injection). After a hit in a thread group
// whose SIGTRAP is caught or ignored, the tracer reads SigCgt and SigIgn
// again (one read of /proc/PID/status):
//
//   - a handler gone to SIG_DFL means the thread blocked SIGTRAP (a handler
//     is reset only then): the handler is put back (injected rt_sigaction)
//     and SIGTRAP blocked again in the thread's mask (PTRACE_SETSIGMASK);
//   - SIG_IGN gone to SIG_DFL: SIG_IGN is put back.
//
// What is not guaranteed (README, known limits): with SIG_DFL, whether the
// thread blocked SIGTRAP before the hit cannot be told afterwards, so a
// thread that blocks SIGTRAP with the default disposition (or while
// ignoring it) finds it unblocked after a hit on a trap-path probe; and a
// handler the program installs after we attached, then loses to such a hit,
// comes back as the handler it had at attach. Jump sites (no trap) have
// none of these effects.

// sigTrap kinds.
const (
	trapDefault = iota
	trapIgnored
	trapCaught
)

const sigTrapBit = 1 << (unix.SIGTRAP - 1)

// sigTrap is the SIGTRAP disposition of one thread group. Tracer-owned.
type sigTrap struct {
	kind int
	// act is the kernel's struct sigaction of the handler (trapCaught):
	// handler, flags, restorer, mask.
	act [32]byte
}

// sizeofKernelSigset is the sigsetsize argument of rt_sigaction.
const sizeofKernelSigset = 8

// trapDisp returns the SIGTRAP disposition the world knows for the thread
// group tgid of p (nil: not known, nothing to keep).
func (p *process) trapDisp(tgid int) *sigTrap {
	return p.sigtrap[tgid]
}

// learnSigTrap records the SIGTRAP disposition of the thread group tgid of
// p, through th (a thread of it) when it has a handler: th is interrupted
// and the handler read by an injected rt_sigaction. fresh says an exec has
// just reset every handler. Call it before the first breakpoint of p goes
// in. Preconditions: on the tracer thread.
func (w *World) learnSigTrap(p *process, tgid int, fresh bool) {
	st, err := procfs.PidStatus(tgid)
	if err != nil {
		return
	}
	d := &sigTrap{kind: trapDefault}
	switch {
	case st.SigIgn&sigTrapBit != 0:
		d.kind = trapIgnored
	case st.SigCgt&sigTrapBit != 0 && !fresh:
		if err := w.readTrapAction(p, tgid, d); err != nil {
			w.log("pid %d: SIGTRAP handler not read (%v): a hit while SIGTRAP is blocked may lose it", tgid, err)
			return
		}
		d.kind = trapCaught
	}
	if p.sigtrap == nil {
		p.sigtrap = map[int]*sigTrap{}
	}
	p.sigtrap[tgid] = d
}

// stopTimeout bounds how long learnSigTrap waits for a thread to stop.
const stopTimeout = time.Second

// readTrapAction reads the SIGTRAP sigaction of tgid into d, through one of
// its threads, interrupted for it (the stops reaped meanwhile are deferred).
func (w *World) readTrapAction(p *process, tgid int, d *sigTrap) error {
	th := p.stoppedThread()
	if th == nil || th.tgid != tgid {
		th = nil
		for _, t := range p.threads {
			if t.tgid == tgid && t.tid == tgid {
				th = t
			}
		}
		if th == nil {
			return fmt.Errorf("no thread of %d", tgid)
		}
		if err := w.stopThread(th); err != nil {
			return err
		}
	}
	return w.trapSigaction(th, d.act[:], false)
}

// stopThread interrupts th and waits (stopTimeout at most) for its next
// stop, which is deferred (handled after the caller's request): th is held
// stopped meanwhile. Preconditions: on the tracer thread; th is not held.
func (w *World) stopThread(th *thread) error {
	if err := ptraceInterrupt(th.tid); err != nil {
		return err
	}
	switch left, err := w.awaitStops([]*thread{th}, stopTimeout); {
	case err != nil:
		return err
	case len(left) > 0:
		return fmt.Errorf("tid %d did not stop within %v", th.tid, stopTimeout)
	case th.state != stopped:
		return fmt.Errorf("tid %d ended", th.tid)
	}
	return nil
}

// stopAll interrupts every thread of p that is not stopped and waits, d at
// most, for their stops (deferred, as stopThread's). It returns the tid of
// a thread that did not stop in time, or 0 (a thread that ended instead
// does not count). Preconditions: on the tracer thread.
func (w *World) stopAll(p *process, d time.Duration) int {
	var wait []*thread
	for _, th := range p.threads {
		if th.state != stopped && ptraceInterrupt(th.tid) == nil {
			wait = append(wait, th)
		}
	}
	if left, _ := w.awaitStops(wait, d); len(left) > 0 {
		return left[0].tid
	}
	return 0
}

// awaitStops waits, d at most, for the next stop (or end) of each of ths,
// interrupted by the caller: each is deferred to the event loop, and a
// stopped thread is held (state stopped). It returns the threads that
// neither stopped nor ended in time, and the first wait error (a thread
// whose wait fails is not waited for any more).
// Preconditions: on the tracer thread.
func (w *World) awaitStops(ths []*thread, d time.Duration) (left []*thread, first error) {
	deadline := time.Now().Add(d)
	for len(ths) > 0 {
		left = ths[:0]
		for _, th := range ths {
			var st unix.WaitStatus
			r, err := wait4(th.tid, &st, true)
			if err != nil {
				if first == nil {
					first = err
				}
				continue
			}
			if r != th.tid {
				left = append(left, th)
				continue
			}
			w.deferEvent(th.tid, st)
			if st.Stopped() {
				th.state = stopped
			}
		}
		ths = left
		if len(ths) == 0 || !time.Now().Before(deadline) {
			break
		}
		nap(20 * time.Microsecond)
	}
	return ths, first
}

// keepSigTrap undoes, after a trap of th on one of our int3, what the
// kernel's forced SIGTRAP did to a handler or SIG_IGN and to the thread's
// mask (see the top of this file). It reports false if th died meanwhile
// (it is dropped then). Preconditions: on the tracer thread; th is stopped
// at the trap.
func (w *World) keepSigTrap(th *thread) bool {
	w.restoreSigTrap(th)
	if th.dead {
		w.dropThread(th)
		return false
	}
	return true
}

func (w *World) restoreSigTrap(th *thread) {
	p := th.proc
	d := p.trapDisp(th.tgid)
	if d == nil || d.kind == trapDefault {
		return
	}
	st, err := procfs.PidStatus(th.tgid)
	if err != nil {
		return
	}
	switch d.kind {
	case trapCaught:
		if st.SigCgt&sigTrapBit != 0 {
			return // kept: SIGTRAP was not blocked
		}
		if err := w.trapSigaction(th, d.act[:], true); err != nil {
			w.errorf("pid %d tid %d: SIGTRAP handler not restored: %v", th.tgid, th.tid, err)
			return
		}
		var mask uint64
		if err := ptraceGetSigmask(th.tid, &mask); err == nil {
			mask |= sigTrapBit
			err = ptraceSetSigmask(th.tid, mask)
		}
		if err != nil {
			w.errorf("pid %d tid %d: SIGTRAP not blocked again: %v", th.tgid, th.tid, err)
		}
	case trapIgnored:
		if st.SigIgn&sigTrapBit != 0 {
			return
		}
		var ign [32]byte
		binary.LittleEndian.PutUint64(ign[:], 1) // SIG_IGN
		if err := w.trapSigaction(th, ign[:], true); err != nil {
			w.errorf("pid %d tid %d: SIG_IGN of SIGTRAP not restored: %v", th.tgid, th.tid, err)
		}
	}
}

// trapSigaction runs an injected rt_sigaction(SIGTRAP) in th's process,
// with the struct sigaction in a scratch area below th's red zone (free,
// and within Go's stack guard): it installs act when set, else reads the
// current action into act. Preconditions: on the tracer thread; th is
// stopped.
func (w *World) trapSigaction(th *thread, act []byte, set bool) error {
	p := th.proc
	sys, err := w.syscallInsn(p, nil)
	if err != nil {
		return err
	}
	var regs install.Regs
	if err := ptraceGetRegs(th.tid, &regs); err != nil {
		return err
	}
	at := (regs.Rsp - 192) &^ 15
	newAct, oldAct := uint64(0), at
	if set {
		if err := p.as.WriteMemory(at, act); err != nil {
			return err
		}
		newAct, oldAct = at, 0
	}
	r, err := w.injectSyscall(th, sys, unix.SYS_RT_SIGACTION, uint64(unix.SIGTRAP), newAct, oldAct, sizeofKernelSigset)
	if err != nil {
		return err
	}
	if e := int64(r); e < 0 {
		return fmt.Errorf("rt_sigaction: %w", unix.Errno(-e))
	}
	if set {
		return nil
	}
	return p.as.ReadMemory(at, act)
}
