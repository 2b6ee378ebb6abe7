package proc

import (
	"encoding/binary"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
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
	if rip < s.entry {
		// In the counting prologue: before the count, the thread goes
		// back to the site as if it had not jumped, the signal is
		// delivered there; after it, the thread goes on at the entry
		// with its own rsp and flags, and single-steps out (the
		// prologue's pushf/popf are never single-stepped: the kernel
		// would leave the trap flag set for the program).
		below, counted, ok := install.TrampPrologue(int(rip - s.tramp))
		var regs install.Regs
		if !ok || ptraceGetRegs(th.tid, &regs) != nil {
			w.resume(th, sig)
			return
		}
		if below == 136 && counted {
			var fl [8]byte
			if th.proc.as.ReadMemory(regs.Rsp, fl[:]) != nil {
				w.resume(th, sig)
				return
			}
			regs.Eflags = binary.LittleEndian.Uint64(fl[:])
		}
		regs.Rsp += below
		regs.Rip = s.vaddr
		if counted {
			regs.Rip = s.entry
		}
		if ptraceSetRegs(th.tid, &regs) != nil || !counted {
			w.resume(th, sig)
			return
		}
	} else if isFault(sig, &si) {
		w.trampFault(th, s, rip)
		w.resume(th, sig)
		return
	}
	th.step = &stepping{vaddr: s.vaddr, held: &si, heldSig: sig, tramp: s.tramp}
	if err := ptraceSingleStep(th.tid, 0); err != nil {
		th.step = nil
		w.resume(th, sig)
		return
	}
	th.state = running
}

// trampFault moves th, stopped by the fault of the relocated instruction
// at rip in the trampoline of s, to that instruction's original address,
// after taking the site's jump out of th's process.
func (w *World) trampFault(th *thread, s *jumpSite, rip uint64) {
	orig, ok := s.plan.OrigAt(s.vaddr, s.tramp, rip)
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
	in := rip >= st.tramp && rip < st.tramp+install.MaxTrampSize
	switch {
	case sig == int(unix.SIGTRAP) && si.code() == trapTrace:
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
