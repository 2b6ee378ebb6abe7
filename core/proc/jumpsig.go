package proc

import (
	"encoding/binary"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/arch/x86/x86asm"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
)

// Signals in trampolines. A thread in a jump site's trampoline (jump.go) is,
// for the program, at the site: a signal delivered there must show the
// program a context it would see natively, never our page.
//
//   - A fault of a displaced instruction (SIGSEGV, SIGBUS... with a kernel
//     si_code) is delivered at that instruction's original address, every
//     register as natively (the trampoline runs the displaced instructions
//     with the program's registers and stack). That address may be inside
//     the displaced range, where a handler that returns would resume: the
//     site goes back to the trap path in this process first (int3, then the
//     original bytes after it), for good.
//   - Any other signal, in the counting prologue before the count: the
//     thread goes back to the site (rsp and flags as there) and gets the
//     signal there, as if it had not jumped yet.
//   - Any other signal after the count: it is held while the thread
//     single-steps out of the trampoline (from its relocated instructions,
//     where a thread in the prologue is moved with its own rsp and flags),
//     then delivered with its own siginfo, as slotsig.go does for a slot:
//     after the displaced instructions, where the program could have been
//     natively.

// trampSignal handles a signal-delivery-stop (sig) of th at rip in the
// trampoline of s.
func (w *World) trampSignal(th *thread, s *jumpSite, sig int, rip uint64) {
	var si siginfo
	if ptraceGetSiginfo(th.tid, &si) != nil {
		w.resume(th, sig)
		return
	}
	st := &stepping{vaddr: s.vaddr, held: &si, heldSig: sig, tramp: s.tramp}
	switch {
	case rip < s.tramp+uint64(install.TrampPushfEnd):
		// Before the pushfq: back at the site as if it had not jumped
		// (rsp 0 or 128 below), the signal delivered there.
		below, _, ok := install.TrampPrologue(int(rip - s.tramp))
		var regs install.Regs
		if ok && ptraceGetRegs(th.tid, &regs) == nil {
			regs.Rsp += below
			regs.Rip = s.vaddr
			ptraceSetRegs(th.tid, &regs)
		}
		w.resume(th, sig)
		return
	case rip < s.popf && w.leavePrologue(th, s, rip, sig):
		if th.step == nil {
			return // back at the site, the signal delivered there
		}
		st = th.step
	case rip < s.popf:
		// Counting (and appending an event): run to the popfq (a
		// hardware breakpoint there; single steps where it cannot be
		// set), which is emulated (the kernel would leave a trap flag
		// that a stepped popf sets to the program), then out.
		st.popf = s.popf
		if ptraceHwBreak(th.tid, s.popf) == nil {
			st.hw = true
			th.step = st
			maskForStep(th, st)
			if err := ptraceCont(th.tid, 0); err != nil {
				unmask(th, st)
				ptraceHwBreak(th.tid, 0)
				th.step = nil
				w.resume(th, sig)
				return
			}
			th.state = running
			return
		}
	case rip <= s.popf+1:
		if !w.endPrologue(th, s, rip) {
			w.resume(th, sig)
			return
		}
	case isFault(sig, &si):
		w.trampFault(th, s, rip)
		w.resume(th, sig)
		return
	}
	th.step = st
	maskForStep(th, st)
	if err := ptraceSingleStep(th.tid, 0); err != nil {
		th.step = nil
		unmask(th, st)
		w.resume(th, sig)
		return
	}
	th.state = running
}

// endPrologue moves th, at the popfq of s's trampoline (or the lea after
// it), to the entry as the two would: the flags from the stack, rsp back
// to the program's. It reports false if it could not.
func (w *World) endPrologue(th *thread, s *jumpSite, rip uint64) bool {
	var regs install.Regs
	if ptraceGetRegs(th.tid, &regs) != nil {
		return false
	}
	if rip == s.popf {
		var fl [8]byte
		if th.proc.as.ReadMemory(regs.Rsp, fl[:]) != nil {
			return false
		}
		regs.Eflags = binary.LittleEndian.Uint64(fl[:])
		regs.Rsp += 8
	}
	regs.Rsp += 128
	regs.Rip = s.entry
	return ptraceSetRegs(th.tid, &regs) == nil
}

// trampFault moves th, stopped by the fault of the relocated instruction
// at rip in the trampoline of s, to that instruction's original address,
// after taking the site's jump out of th's process.
func (w *World) trampFault(th *thread, s *jumpSite, rip uint64) {
	orig, ok := s.plan.OrigAt(s.vaddr, s.tramp, rip, s.ev)
	if !ok {
		return // not at an instruction of ours: delivered where it is
	}
	if orig != s.vaddr {
		p := th.proc
		w.lockMM(p.mm)
		if err := p.unjumpLocked(s); err != nil {
			w.errorf("pid %d: jump site %#x back to the trap path: %v", p.pid, s.vaddr, err)
		}
		p.mm.MmapSem.Unlock()
		w.setWhy(s, "a displaced instruction faulted")
	}
	if err := ptracePokeRip(th.tid, orig); err != nil {
		w.errorf("tid %d: poke rip: %v", th.tid, err)
	}
}

// trampStep handles a stop of th while it single-steps out of a trampoline
// to deliver a held signal (st.tramp). It reports false for a stop it does
// not handle (stepSignal's other cases do).
func (w *World) trampStep(th *thread, st *stepping, sig int, si *siginfo, rip uint64) bool {
	p := th.proc
	in := rip >= st.tramp && rip < st.tramp+trampStride
	switch {
	case sig == int(unix.SIGTRAP) && (si.code() == trapTrace || si.code() == trapHwbkpt):
		if st.hw {
			st.hw = false
			ptraceHwBreak(th.tid, 0)
		}
		if st.popf != 0 && rip == st.popf {
			st.popf = 0
			if s := p.inTramp(rip); s == nil || !w.endPrologue(th, s, rip) {
				th.step = nil
				w.deliverHeld(th, st, 0)
				return true
			}
		}
		if in {
			if ptraceSingleStep(th.tid, 0) == nil {
				th.state = running
				return true
			}
		}
		th.step = nil
		w.deliverHeld(th, st, 0)
		return true
	case isFault(sig, si) && in:
		th.step = nil
		if s := p.inTramp(rip); s != nil {
			w.trampFault(th, s, rip)
		}
		w.deliverHeld(th, st, sig)
		return true
	}
	return false
}

// leavePrologue moves th, stopped by sig at rip inside the counting and
// event code of s's trampoline, out of it without running it (its state
// from install.JumpPlan.PrologueStates): before the count, back to the
// site with its registers and flags (the signal is delivered there: th is
// resumed, th.step nil); after it, on to the entry, a claimed event record
// published by us (or the event made here, when the thread was to append
// it but had not claimed one), th.step set to single-step out of the
// relocated instructions. It reports false if it could not (th untouched).
func (w *World) leavePrologue(th *thread, s *jumpSite, rip uint64, sig int) bool {
	if s.ev == nil {
		return false
	}
	states, err := s.plan.PrologueStates(s.vaddr, s.tramp, *s.ev)
	if err != nil {
		return false
	}
	ps, ok := states[int(rip-s.tramp)]
	var regs install.Regs
	if !ok || ptraceGetRegs(th.tid, &regs) != nil {
		return false
	}
	as := th.proc.as
	read := func(a uint64) (uint64, bool) {
		var b [8]byte
		if as.ReadMemory(a, b[:]) != nil {
			return 0, false
		}
		return binary.LittleEndian.Uint64(b[:]), true
	}
	flags, ok := read(regs.Rsp + ps.Below - 136)
	if !ok {
		return false
	}
	idx := regs.Rcx // the claimed record's number (before the saved rcx is back)
	if ps.Inc {
		idx--
	}
	out := regs
	for r, off := range ps.Saved {
		v, ok := read(regs.Rsp + off)
		if !ok {
			return false
		}
		switch r {
		case x86asm.RAX:
			out.Rax = v
		case x86asm.RCX:
			out.Rcx = v
		case x86asm.RDX:
			out.Rdx = v
		case x86asm.RSI:
			out.Rsi = v
		default:
			return false
		}
	}
	out.Eflags, out.Rsp = flags, regs.Rsp+ps.Below
	if !ps.Counted {
		out.Rip = s.vaddr
		if ptraceSetRegs(th.tid, &out) != nil {
			return false
		}
		w.resume(th, sig)
		return true
	}
	out.Rip = s.entry
	if ptraceSetRegs(th.tid, &out) != nil {
		return false
	}
	w.jumpMu.Lock()
	switch {
	case ps.Claimed && s.reg != nil:
		rec := s.reg.local[jumpRingOff+int(idx%jumpRingRecs)*install.EvRecSize:]
		word := func(i int) *uint64 { return (*uint64)(unsafe.Pointer(&rec[i*8])) }
		atomic.StoreUint64(word(1), rdtsc())
		atomic.StoreUint64(word(2), regs.FsBase)
		atomic.StoreUint64(word(3), uint64(s.ev.ID))
		atomic.StoreUint64(word(0), idx+1)
	case !ps.Published && s.flag != nil && atomic.LoadUint64(s.flag) != 0 && s.u != nil:
		// It was to append the event and had not claimed a record.
		w.eng.DispatchEvent(s.u, probes.Hit{Pid: s.pid, Tid: th.tid, Vaddr: s.vaddr, Time: time.Now().UnixNano()})
	}
	w.jumpMu.Unlock()
	var si siginfo
	ptraceGetSiginfo(th.tid, &si)
	th.step = &stepping{vaddr: s.vaddr, held: &si, heldSig: sig, tramp: s.tramp}
	return true
}
