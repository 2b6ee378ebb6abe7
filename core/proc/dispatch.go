package proc

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/internal/procfs"
)

// The tracer's handler: every reaped wait status of a traced thread comes
// here, on the tracer thread.

func (w *World) known(tid int) bool { return w.threads[tid] != nil || w.reapable[tid] }

func (w *World) held(tid int) bool {
	th := w.threads[tid]
	return th != nil && th.state == stopped
}

func (w *World) tids() []int {
	out := make([]int, 0, len(w.threads))
	for tid := range w.threads {
		out = append(out, tid)
	}
	return out
}

// event handles one wait status of a traced thread.
func (w *World) event(tid int, st unix.WaitStatus) {
	th := w.threads[tid]
	if th == nil && w.reapable[tid] {
		// A thread whose end we already accounted for (exec).
		if st.Stopped() {
			ptraceCont(tid, 0)
		} else {
			delete(w.reapable, tid)
		}
		return
	}
	if th == nil {
		if st.Stopped() {
			// An auto-attached child whose creator's event comes
			// later: keep the stop until it is announced.
			if len(w.orphans) == 0 {
				w.after(orphanAdopt, w.adoptOrphans)
			}
			w.orphans[tid] = orphan{st: uint32(st), when: time.Now()}
		}
		return
	}
	if st.Exited() || st.Signaled() {
		w.dropThread(th)
		return
	}
	if !st.Stopped() {
		return
	}
	th.state = stopped
	th.execed = false
	if p := th.proc; p != nil && p.hasPokes() && int(st)>>16 != unix.PTRACE_EVENT_EXEC {
		// (Not at an exec stop: the thread has a new address space.)
		w.runPokes(p, th)
	}
	sig := int(st.StopSignal())
	ev := int(st) >> 16
	if th.detach {
		w.detachStop(th, sig, ev)
		return
	}
	if ev != unix.PTRACE_EVENT_STOP && (ev != 0 || sig != int(unix.SIGTRAP)) {
		// Its early trap would be the next signal stop. An interrupt
		// (a jump switch stopping the process) or a group-stop comes
		// before it and leaves it to come: the popf's early trap
		// once reached the program as a trap too many.
		th.popfAt = 0
	}
	switch ev {
	case 0:
		if (th.step != nil || (sig != int(unix.SIGTRAP) && sig != int(unix.SIGTRAP)|0x80)) && w.slotSignal(th, sig) {
			return // a signal while in a slot (slotsig.go)
		}
		if sig == int(unix.SIGTRAP) {
			w.trap(th)
			return
		}
		if sig == int(unix.SIGTRAP)|0x80 {
			w.syscallStop(th) // PTRACE_O_TRACESYSGOOD
			return
		}
		w.resume(th, sig) // a signal: it passes through
	case unix.PTRACE_EVENT_STOP:
		w.eventStop(th, sig)
	case unix.PTRACE_EVENT_CLONE, unix.PTRACE_EVENT_FORK, unix.PTRACE_EVENT_VFORK:
		msg, err := ptraceGetEventMsg(th.tid)
		if err == nil {
			w.newChild(th, ev, int(msg))
		}
		if th.state == stopped && !th.detach {
			w.resume(th, 0)
		}
	case unix.PTRACE_EVENT_EXEC:
		w.execed(th)
	case unix.PTRACE_EVENT_EXIT:
		w.resume(th, 0)
	default:
		w.resume(th, 0)
	}
}

// isStopSignal reports whether sig is one of the job-control stop signals.
func isStopSignal(sig int) bool {
	switch unix.Signal(sig) {
	case unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
		return true
	}
	return false
}

// eventStop handles a PTRACE_EVENT_STOP: a group-stop (job control), which
// must stay stopped until SIGCONT (PTRACE_LISTEN), or a trap stop (the
// first stop of an auto-attached child, PTRACE_INTERRUPT, the re-trap when a
// listening thread is continued), after which it just runs on.
//
// With PTRACE_SEIZE a group-stop is a PTRACE_EVENT_STOP whose signal is the
// stop signal; every other PTRACE_EVENT_STOP has SIGTRAP (the kernel's
// do_jobctl_trap).
func (w *World) eventStop(th *thread, sig int) {
	w.noteFs(th) // a new thread's first stop, among others (jumpev.go)
	if isStopSignal(sig) {
		if err := ptraceListen(th.tid); err == nil {
			th.state = listening
			return
		}
	}
	w.resume(th, 0)
}

// resume continues a stopped thread with sig (0: none), delivering first any
// signal held back during a syscall injection.
func (w *World) resume(th *thread, sig int) {
	if len(th.sigs) > 0 {
		if sig != 0 {
			unix.Tgkill(th.tgid, th.tid, unix.Signal(sig))
		}
		sig, th.sigs = th.sigs[0], th.sigs[1:]
		for _, s := range th.sigs {
			unix.Tgkill(th.tgid, th.tid, unix.Signal(s))
		}
		th.sigs = nil
	}
	cont := ptraceCont
	if th.follow != 0 {
		cont = ptraceSyscall // following its system calls (syscalls.go)
	}
	if st := th.step; st != nil && st.fault == 0 && !st.hw {
		// Single-stepping a slot to deliver a held signal after it
		// (slotsig.go): resumed from any other stop meanwhile (a
		// group-stop, an interrupt), it must go on stepping: a
		// PTRACE_CONT would drop the step, and the held signal with it.
		cont = ptraceSingleStep
	}
	if err := cont(th.tid, sig); err != nil {
		if err != unix.ESRCH {
			w.errorf("resume tid %d: %v", th.tid, err)
		}
		// ESRCH: killed meanwhile; its exit will be reported.
	}
	th.state = running
}

// detachStop handles a stop of a thread that is being detached.
func (w *World) detachStop(th *thread, sig, ev int) {
	if th.step != nil {
		w.abandonStep(th)
	}
	switch ev {
	case 0:
		if sig == int(unix.SIGTRAP) {
			if w.trapDetach(th) {
				return
			}
		}
		if sig == int(unix.SIGTRAP)|0x80 {
			sig = 0 // a syscall stop (following its calls): no signal
		}
		w.detachNow(th, sig)
	case unix.PTRACE_EVENT_CLONE, unix.PTRACE_EVENT_FORK, unix.PTRACE_EVENT_VFORK:
		if msg, err := ptraceGetEventMsg(th.tid); err == nil {
			w.newChild(th, ev, int(msg))
		}
		w.detachNow(th, 0)
	case unix.PTRACE_EVENT_EXEC:
		if !w.closed.Load() {
			// A new image, which may map a watched inode (and was
			// not held at its exec: it was traced).
			th.detach = false
			w.execed(th)
			return
		}
		w.detachNow(th, 0)
	case unix.PTRACE_EVENT_STOP:
		if !isStopSignal(sig) && trapPending(th) {
			// Interrupted after it executed an int3 of ours: the
			// SIGTRAP is queued (a jobctl trap is reported before
			// signals are dequeued). Detached now, the thread would
			// die of it; let it report the SIGTRAP, which
			// trapDetach then handles.
			w.resume(th, 0)
			return
		}
		// Interrupt, group-stop (stays stopped after detach).
		w.detachNow(th, 0)
	default:
		// Exit.
		w.detachNow(th, 0)
	}
}

// trapPending reports whether a SIGTRAP is pending for th itself (SigPnd
// of /proc/TGID/task/TID/status).
func trapPending(th *thread) bool {
	bp := procfs.GetBuf()
	defer procfs.PutBuf(bp)
	b, err := procfs.ReadFile(fmt.Sprintf("/proc/%d/task/%d/status", th.tgid, th.tid), bp)
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "SigPnd:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && m&(1<<(unix.SIGTRAP-1)) != 0
		}
	}
	return false
}
