package proc

import (
	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
)

// Signals in slots. A thread stepping over a probed instruction runs it in
// a slot of its XOL page (xol.go), or, when emulating it would fault, runs
// the instruction's memory accesses there (install.FaultCode). A signal
// delivered meanwhile must show the program the context it would see
// natively, at the probed instruction, never inside our page (the kernel's
// arch_uprobe_abort_xol and uprobe_deny_signal):
//
//   - a fault of the instruction itself (SIGSEGV, SIGBUS... with a kernel
//     si_code) at the slot's start: rip goes back to the instruction (and,
//     in fault code, every register to its value there), and the kernel's
//     own siginfo and fault context are delivered, exactly as natively;
//   - any signal after the instruction ran (rip at the slot's jump back):
//     rip goes to the instruction after the probed one, then the signal;
//   - an asynchronous signal before the instruction ran: it is held, the
//     thread single-steps the instruction, and the signal is then
//     delivered with its own siginfo after the instruction, as the kernel
//     does when it denies a signal during a step.
//
// A popf that sets TF traps after the instruction following it; in a slot
// that instruction is our jump back, so the trap arrives at the probed
// instruction's successor one instruction early and would be one trap too
// many: it is swallowed (the thread then traps natively, one instruction
// later, as without us).

// slotOrigin is what a slot runs: the probed instruction at vaddr.
type slotOrigin struct {
	vaddr uint64
	plan  *install.Plan
	fault bool // fault code, not the instruction
}

// noteSlot records that the slot at slot runs plan's instruction at vaddr.
func (x *xolState) noteSlot(slot, vaddr uint64, plan *install.Plan, fault bool) {
	if x.origin == nil {
		x.origin = map[uint64]slotOrigin{}
	}
	x.origin[slot] = slotOrigin{vaddr: vaddr, plan: plan, fault: fault}
}

// slotAt returns the slot that rip is in (its address and origin), if any.
func (x *xolState) slotAt(rip uint64) (uint64, slotOrigin, bool) {
	for _, pg := range x.pages {
		if rip < pg.addr+xolHeader || rip >= pg.addr+xolPageSize {
			continue
		}
		slot := rip - (rip-pg.addr-xolHeader)%install.MaxSlotSize
		o, ok := x.origin[slot]
		return slot, o, ok
	}
	return 0, slotOrigin{}, false
}

// stepping is a step-over whose end the tracer must see: fault code
// running, or a slot single-stepped to deliver a held signal after it.
type stepping struct {
	vaddr uint64
	plan  *install.Plan
	// regs are the thread's registers at the probed instruction (fault
	// code only: the accesses may change the flags).
	regs install.Regs
	// fault is the fault code's address (0: a single-stepped slot) and
	// tries how many times it ran to its end with the emulation failing
	// again.
	fault uint64
	tries int
	// held is a signal held back until the step ends.
	held    *siginfo
	heldSig int
	more    []int // further signals that arrived during the step
	// mask, when masked, is the thread's signal mask, every asynchronous
	// signal blocked meanwhile (a stream of them would stop every step
	// before it runs: jumpsig.go); put back before the held one goes.
	mask   uint64
	masked bool
	// tramp is the trampoline the thread single-steps out of (jumpsig.go),
	// 0: none; popf, when not 0, its popfq, emulated when reached; hw: a
	// hardware breakpoint there takes the thread to it (no single steps).
	tramp, popf uint64
	hw          bool
}

// maxFaultTries bounds the fault-code runs of one step: each run either
// faults (the signal is delivered) or finds the accesses possible, and
// emulation then fails again only if another thread keeps unmapping the
// memory in between.
const maxFaultTries = 8

// faultStep runs the fault code of plan's instruction at vaddr in th, whose
// registers at the instruction are regs, after Emulate failed. It reports
// false if there is no fault code or no slot for it.
func (w *World) faultStep(th *thread, vaddr uint64, plan *install.Plan, regs *install.Regs) bool {
	if !plan.HasFaultCode() {
		return false
	}
	x := &th.proc.xol
	s, ok := x.faults[vaddr]
	if !ok || s.plan != plan {
		slot, code, err := w.allocSlot(th, vaddr, func(a uint64) ([]byte, error) { return plan.FaultCode(vaddr, a) })
		if th.dead || err != nil {
			if err != nil {
				w.errorf("tid %d: no slot for the fault code of %s at %#x: %v", th.tid, plan.Asm, vaddr, err)
			}
			return false
		}
		s = xolSlot{addr: slot, plan: plan, code: code}
		if x.faults == nil {
			x.faults = map[uint64]xolSlot{}
		}
		x.faults[vaddr] = s
		x.noteSlot(slot, vaddr, plan, true)
	}
	st := &stepping{vaddr: vaddr, plan: plan, regs: *regs, fault: s.addr}
	if th.step != nil {
		st.tries, st.held, st.heldSig = th.step.tries+1, th.step.held, th.step.heldSig
	}
	r := *regs
	r.Rip = s.addr
	if err := ptraceSetRegs(th.tid, &r); err != nil {
		return false
	}
	th.step = st
	return true
}

// isFault reports whether si is a fault of the instruction the thread
// executed (a kernel-generated synchronous signal), not a signal sent.
func isFault(sig int, si *siginfo) bool {
	switch unix.Signal(sig) {
	case unix.SIGSEGV, unix.SIGBUS, unix.SIGFPE, unix.SIGILL, unix.SIGTRAP:
		return si.code() > 0 && si.code() != siKernel
	}
	return false
}

// slotSignal handles a signal-delivery-stop (sig) of th while it may be in
// a slot. It reports false if th is not in one (nothing done).
func (w *World) slotSignal(th *thread, sig int) bool {
	p := th.proc
	if p == nil || (len(p.xol.pages) == 0 && len(p.jump.regions) == 0 && th.step == nil) {
		return false
	}
	rip, err := ptracePeekRip(th.tid)
	if err != nil {
		return false
	}
	if st := th.step; st != nil {
		w.stepSignal(th, st, sig, rip)
		return true
	}
	if s := p.inTramp(rip); s != nil {
		w.trampSignal(th, s, sig, rip)
		return true
	}
	slot, o, ok := p.xol.slotAt(rip)
	if !ok || o.fault {
		return false
	}
	var si siginfo
	if ptraceGetSiginfo(th.tid, &si) != nil {
		return false
	}
	switch {
	case rip == slot+uint64(o.plan.Len):
		// The instruction ran: the signal comes after it.
		ptracePokeRip(th.tid, o.vaddr+uint64(o.plan.Len))
		w.resume(th, sig)
	case rip != slot:
		return false // not where a thread can be
	case isFault(sig, &si):
		ptracePokeRip(th.tid, o.vaddr)
		w.resume(th, sig)
	default:
		// Before the instruction: hold the signal, step, deliver.
		th.step = &stepping{vaddr: o.vaddr, plan: o.plan, held: &si, heldSig: sig}
		if err := ptraceSingleStep(th.tid, 0); err != nil {
			th.step = nil
			w.resume(th, sig)
			return true
		}
		th.state = running
	}
	return true
}

// stepSignal handles a signal-delivery-stop of th during the step st.
func (w *World) stepSignal(th *thread, st *stepping, sig int, rip uint64) {
	var si siginfo
	if ptraceGetSiginfo(th.tid, &si) != nil {
		th.step = nil
		w.deliverHeld(th, st, sig)
		return
	}
	if st.tramp != 0 && w.trampStep(th, st, sig, &si, rip) {
		return
	}
	var start, end uint64 // the fault code
	if st.fault != 0 {
		start = st.fault
		end = start + uint64(len(th.proc.xol.faults[st.vaddr].code))
	}
	switch {
	case st.fault != 0 && sig == int(unix.SIGTRAP) && rip == end && si.code() == siKernel:
		// The accesses succeeded: emulate again.
		th.step = nil
		regs := st.regs
		if err := st.plan.Emulate(&regs, userMem{th.tgid}); err == nil {
			ptraceSetRegs(th.tid, &regs)
			w.deliverHeld(th, st, 0)
			return
		}
		if st.tries < maxFaultTries {
			th.step = st
			if w.faultStep(th, st.vaddr, st.plan, &st.regs) {
				w.resume(th, 0)
				return
			}
			th.step = nil
		}
		w.errorf("tid %d: %s at %#x: emulation keeps failing where its accesses succeed; the instruction is restarted", th.tid, st.plan.Asm, st.vaddr)
		ptraceSetRegs(th.tid, &st.regs)
		w.deliverHeld(th, st, 0)
	case st.fault != 0 && rip >= start && rip < end && isFault(sig, &si):
		// The instruction's own fault, for real: the program sees it at
		// the instruction, every register as it was there.
		th.step = nil
		ptraceSetRegs(th.tid, &st.regs)
		w.deliverHeld(th, st, sig)
	case st.fault == 0 && sig == int(unix.SIGTRAP) && si.code() == trapTrace:
		// The single step is done: rip is at the slot's jump back.
		th.step = nil
		if slot, o, ok := th.proc.xol.slotAt(rip); ok && !o.fault && rip == slot+uint64(o.plan.Len) {
			ptracePokeRip(th.tid, o.vaddr+uint64(o.plan.Len))
		}
		w.deliverHeld(th, st, 0)
	case st.fault == 0 && isFault(sig, &si):
		// The single-stepped instruction faulted.
		th.step = nil
		if slot, o, ok := th.proc.xol.slotAt(rip); ok && !o.fault && rip == slot {
			ptracePokeRip(th.tid, o.vaddr)
		}
		w.deliverHeld(th, st, sig)
	case st.fault == 0 && sig == int(unix.SIGTRAP) && si.code() == siKernel:
		// An int3 reached with the step gone (it cannot be, as resume
		// keeps stepping; should it be): the held signals are sent
		// again and the trap is an ordinary one.
		th.step = nil
		w.resendHeld(th, st)
		w.trap(th)
	default:
		// Another signal during the step: held too.
		if st.held == nil {
			st.held, st.heldSig = &si, sig
		} else {
			st.more = append(st.more, sig)
		}
		if st.fault != 0 {
			w.resume(th, 0) // the fault code runs on
			return
		}
		if ptraceSingleStep(th.tid, 0) != nil {
			th.step = nil
			w.deliverHeld(th, st, 0)
			return
		}
		th.state = running
	}
}

// deliverHeld resumes th at the end of a step with sig (the stop's own
// signal, 0: none; its siginfo is the kernel's) and the signals held during
// the step. The first held one keeps its siginfo when it is delivered at
// this stop (sig 0); the others are sent again (their siginfo is then the
// tracer's tgkill).
func (w *World) deliverHeld(th *thread, st *stepping, sig int) {
	unmask(th, st)
	var resend []int
	if st.held != nil {
		if sig == 0 && ptraceSetSiginfo(th.tid, st.held) == nil {
			sig = st.heldSig
		} else {
			resend = append(resend, st.heldSig)
		}
	}
	resend = append(append(resend, st.more...), th.sigs...)
	th.sigs = nil
	for _, s := range resend {
		unix.Tgkill(th.tgid, th.tid, unix.Signal(s))
	}
	w.resume(th, sig)
}

// resendHeld sends the signals held during st again (tgkill: their
// siginfo is then the tracer's).
func (w *World) resendHeld(th *thread, st *stepping) {
	if st.held != nil {
		unix.Tgkill(th.tgid, th.tid, unix.Signal(st.heldSig))
	}
	for _, s := range st.more {
		unix.Tgkill(th.tgid, th.tid, unix.Signal(s))
	}
}

// abandonStep ends th's step when th is detached in the middle of it: out
// of fault code (whose int3 would kill it untraced), back at the probed
// instruction, whose original bytes are back; a single-stepped slot just
// runs on. The held signals are sent again.
func (w *World) abandonStep(th *thread) {
	st := th.step
	th.step = nil
	unmask(th, st)
	if st.fault != 0 {
		ptraceSetRegs(th.tid, &st.regs)
	}
	w.resendHeld(th, st)
}

// syncSigs are the signals an instruction raises itself: never blocked
// during a step (the kernel would kill the process for a blocked one).
const syncSigs = 1<<(unix.SIGSEGV-1) | 1<<(unix.SIGBUS-1) | 1<<(unix.SIGFPE-1) | 1<<(unix.SIGILL-1) | 1<<(unix.SIGTRAP-1)

// maskForStep blocks th's asynchronous signals for the step st (they stay
// pending, and reach the program after it, where they may come natively).
func maskForStep(th *thread, st *stepping) {
	var m uint64
	if ptraceGetSigmask(th.tid, &m) == nil && ptraceSetSigmask(th.tid, ^uint64(syncSigs)) == nil {
		st.mask, st.masked = m, true
	}
}

// unmask puts back the mask maskForStep saved.
func unmask(th *thread, st *stepping) {
	if st != nil && st.masked {
		st.masked = false
		ptraceSetSigmask(th.tid, st.mask)
	}
}
