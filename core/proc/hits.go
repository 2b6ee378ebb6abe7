package proc

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
)

// The hit path. A thread executing one of our int3 stops with SIGTRAP
// (si_code SI_KERNEL) and rip one past the breakpoint. The tracer counts the
// hit for the uprobe's consumers and steps over the probed instruction
// without removing the breakpoint (other threads may run through it at the
// same moment): it emulates the instruction (Kind Emulate), or points rip at
// the instruction's out-of-line slot (Kind Slot), whose code runs the
// relocated instruction and jumps back. One trap per hit, no single-step.

// trap handles a SIGTRAP signal-delivery-stop of th.
func (w *World) trap(th *thread) {
	prof := w.opts.Profile
	var t0 time.Time
	if prof != nil {
		t0 = time.Now()
	}
	p := th.proc
	if p == nil {
		w.resume(th, int(unix.SIGTRAP))
		return
	}
	rip, err := ptracePeekRip(th.tid)
	if err != nil {
		w.resume(th, int(unix.SIGTRAP))
		return
	}
	addr := rip - 1
	if isTramp(th, addr) {
		w.trampHit(th) // a return of a return probe (uretprobe.go)
		return
	}
	u, ever := w.lookup(p, addr)
	// Is it an int3 (si_code SI_KERNEL)? When the probed instruction is
	// longer than one byte, rip = addr+1 is inside it, where no thread
	// can be but after executing our int3: the siginfo is read only
	// where it can tell something (one system call less per hit).
	var plan *install.Plan
	if u != nil {
		plan = u.Arch
	}
	if plan == nil || plan.Len <= 1 {
		var si siginfo
		if err := ptraceGetSiginfo(th.tid, &si); err != nil || si.code() != siKernel {
			// Not an int3 (kill -TRAP, a hardware breakpoint, a
			// single step...).
			if si.code() == trapTrace && rip == th.popfAt && rip != 0 {
				// The early trap of a popf run in a slot: the
				// thread traps again after the next instruction,
				// as natively (slotsig.go).
				th.popfAt = 0
				w.resume(th, 0)
				return
			}
			if !w.slotSignal(th, int(unix.SIGTRAP)) {
				w.resume(th, int(unix.SIGTRAP))
			}
			return
		}
	}
	th.popfAt = 0
	if u == nil {
		if p.internalBp(addr) || ever {
			// One of our int3 all the same: undo its forced SIGTRAP.
			if !w.keepSigTrap(th) {
				return
			}
		}
		if addr == p.rbrk && p.rbrk != 0 {
			w.rbrkHit(th, addr)
			return
		}
		if h := p.sigHooks[addr]; h != nil {
			w.sigHookHit(th, addr, h)
			return
		}
		if ever && w.restart(th, addr) {
			w.resume(th, 0)
			return
		}
		// The program's own int3: it gets its SIGTRAP.
		w.log("pid %d tid %d: int3 at %#x not ours: SIGTRAP delivered", th.tgid, th.tid, addr)
		w.resume(th, int(unix.SIGTRAP))
		return
	}
	if w.place.mode != PlaceNone {
		w.place.follow(th)
	}
	// Back on the int3 while the tracer holds the thread: a daemon killed
	// from now until the step-over leaves it to run on from here, which
	// must not skip the probed instruction (it runs the int3 again: the
	// SIGTRAP of a daemon's death, or the byte the guardian put back).
	// The step-over sets rip anew.
	rewind(th, addr)
	w.nHits.Add(1)
	hit := probes.Hit{Pid: th.tgid, Tid: th.tid, Vaddr: addr, Time: time.Now().UnixNano()}
	if u.WantsRegs() {
		// Fetch arguments: the registers at the probed instruction.
		var regs install.Regs
		if ptraceGetRegs(th.tid, &regs) == nil {
			regs.Rip = addr
			hit.Regs, hit.Mem = &regs, userMem{th.tgid}
		}
	}
	w.eng.Dispatch(u, hit)
	if u.WantsReturn() {
		w.hijack(th, u, addr, hit.Time) // before the step-over moves rsp
	}
	if !w.keepSigTrap(th) {
		return // th is gone
	}
	var t1 time.Time
	if prof != nil {
		t1 = time.Now()
	}
	if !w.stepOver(th, u, addr) {
		return // th is gone
	}
	var t2 time.Time
	if prof != nil {
		t2 = time.Now()
	}
	w.resume(th, 0)
	if prof != nil {
		prof.record(w.t, t0, t1, t2, time.Now())
	}
}

// rewind puts a thread trapped at the int3 at addr back on it (trap, and
// before system calls are injected through it): a daemon killed meanwhile
// leaves the thread to run on from its saved registers, which must not
// skip the probed instruction (it runs the int3 again, or the byte the
// guardian put back). Every step-over sets rip anew afterwards.
func rewind(th *thread, addr uint64) {
	ptracePokeRip(th.tid, addr)
}

// lookup returns the uprobe whose breakpoint the engine has at addr in p
// (the engine's table is the truth), and whether p ever had a breakpoint
// written there (its history).
// Preconditions: on the tracer thread.
func (w *World) lookup(p *process, addr uint64) (*probes.Uprobe, bool) {
	mm := p.mm
	mm.MmapSem.RLock()
	u := w.eng.LookupLocked(mm, addr)
	mm.MmapSem.RUnlock()
	p.everMu.Lock()
	_, ever := p.everBp[addr]
	p.everMu.Unlock()
	return u, ever
}

// stepOver moves th past the probed instruction at addr. It reports false
// if th disappeared meanwhile (it was dropped).
func (w *World) stepOver(th *thread, u *probes.Uprobe, addr uint64) bool {
	plan := u.Arch
	if plan == nil {
		w.giveUp(th, u, addr, errors.New("no step-over plan"))
		return true
	}
	if plan.IsCallOrRet() && w.shadowStack(th) {
		// Emulation would leave the shadow stack behind (shstk.go).
		slot, err := w.branchSlotFor(th, addr, plan)
		if th.dead {
			w.dropThread(th)
			return false
		}
		if err != nil {
			w.giveUp(th, u, addr, err)
		} else if err := ptracePokeRip(th.tid, slot); err != nil {
			w.errorf("tid %d: poke rip: %v", th.tid, err)
		}
		return true
	}
	if plan.Jump != nil && u.Inode != nil && !w.opts.NoJump { // not an internal breakpoint
		// A jump site (or one to be): the whole displaced range is
		// stepped over through the trampoline (jump.go), so that no
		// thread is ever left between displaced instructions.
		s := w.jumpSiteFor(th.proc, addr, u)
		p := th.proc
		other := uint64(0)
		if s.why == "" { // a site that stays a trap needs no look inside
			p.mm.MmapSem.RLock()
			other = w.othersInside(p, s)
			p.mm.MmapSem.RUnlock()
			w.setBlocked(s, other)
		}
		if s.why == "" && other == 0 {
			fresh := s.tramp == 0
			err := w.trampFor(th, s)
			if th.dead {
				w.dropThread(th)
				return false
			}
			if err == nil {
				if err := ptracePokeRip(th.tid, s.entry); err != nil {
					w.errorf("tid %d: poke rip: %v", th.tid, err)
				}
				if fresh && w.countOnly(u) {
					// Its switch may have waited for this trampoline.
					w.t.post(func() { w.switchJumps(p, map[uint64]*probes.Uprobe{addr: u}) })
				}
				return true
			}
			w.setWhy(s, "no trampoline: "+err.Error())
		}
	}
	switch {
	case plan.Class == "nop" || plan.Class == "endbr64":
		// rip alone: PTRACE_POKEUSER is cheaper than SETREGS.
		if err := ptracePokeRip(th.tid, addr+uint64(plan.Len)); err != nil {
			w.errorf("tid %d: poke rip: %v", th.tid, err)
		}
		return true
	case plan.Kind == install.Slot || (plan.Kind == install.Emulate && w.relocatable(plan)):
		// Emulated instructions that can run out of line (push, mov,
		// add/sub rsp...) run in a slot too: rip is one POKEUSER where
		// emulation needs GETREGS, a memory write and SETREGS.
		slot, err := w.slotFor(th, addr, plan)
		if th.dead {
			w.dropThread(th)
			return false
		}
		if err == nil {
			if err := ptracePokeRip(th.tid, slot); err != nil {
				w.errorf("tid %d: poke rip: %v", th.tid, err)
			}
			if plan.PopsFlags() {
				th.popfAt = addr + uint64(plan.Len)
			}
			return true
		}
		if plan.Kind == install.Slot {
			w.giveUp(th, u, addr, err)
			return true
		}
		w.errorf("tid %d: no slot for %s at %#x, emulating: %v", th.tid, plan.Asm, addr, err)
	case plan.Kind != install.Emulate:
		w.giveUp(th, u, addr, fmt.Errorf("unknown step-over kind %v", plan.Kind))
		return true
	}
	var regs install.Regs
	if err := ptraceGetRegs(th.tid, &regs); err != nil {
		w.errorf("tid %d: getregs: %v", th.tid, err)
		return true
	}
	regs.Rip = addr
	at := regs
	if err := plan.Emulate(&regs, userMem{th.tgid}); err != nil {
		// An access of the instruction failed: make it for real, in
		// the process (slotsig.go), so that it faults exactly as
		// natively, or succeeds now (the kernel grows a stack on a
		// write below it, which ours through /proc cannot).
		if w.faultStep(th, addr, plan, &at) {
			return true
		}
		if th.dead {
			w.dropThread(th)
			return false
		}
		ptracePokeRip(th.tid, addr)
		th.sigs = append(th.sigs, int(unix.SIGSEGV))
		w.errorf("tid %d: emulate %s at %#x: %v", th.tid, plan.Asm, addr, err)
		return true
	}
	if err := ptraceSetRegs(th.tid, &regs); err != nil {
		w.errorf("tid %d: setregs: %v", th.tid, err)
	}
	return true
}

// relocatable reports whether plan's instruction can run in a slot.
func (w *World) relocatable(plan *install.Plan) bool {
	r, ok := w.reloc[plan]
	if !ok {
		_, err := plan.SlotCode(0x10000000, 0x10001000)
		r = err == nil
		w.reloc[plan] = r
	}
	return r
}

// giveUp handles a breakpoint that cannot be stepped over in th's process:
// the original byte goes back (in this process only; hits there are no
// longer seen) and th runs the instruction again. It is logged as an error.
func (w *World) giveUp(th *thread, u *probes.Uprobe, addr uint64, why error) {
	p := th.proc
	w.errorf("pid %d: breakpoint at %#x cannot be stepped over, removed from this process: %v", p.pid, addr, why)
	if u.Inode != nil {
		w.lockMM(p.mm)
		err := w.eng.RemoveLocked(p.mm, addr)
		p.mm.MmapSem.Unlock()
		if err != nil {
			w.errorf("pid %d: remove %#x: %v", p.pid, addr, err)
		}
	} else if s, ok := p.everSite(addr); ok { // an internal breakpoint
		if err := w.writeBreakpoint(p, addr, s, false); err != nil {
			w.errorf("pid %d: remove %#x: %v", p.pid, addr, err)
		}
	}
	p.failMu.Lock()
	if p.failed == nil {
		p.failed = map[uint64]string{}
	}
	p.failed[addr] = "cannot step over: " + why.Error()
	p.failMu.Unlock()
	ptracePokeRip(th.tid, addr)
}

// restart makes th run again the instruction at addr, where the world had
// a breakpoint that it no longer has: removed while th was trapping on it,
// or a stale copy (a fork child whose uprobe left the engine between the
// fork and the child's MmapHooks). A stale int3 still there is restored
// first (through the checked write path). It reports false if it could not.
func (w *World) restart(th *thread, addr uint64) bool {
	p := th.proc
	s, ever := p.everSite(addr)
	if !ever {
		return false
	}
	// The byte first, then the engine's table, under one mmap_sem: an
	// int3 that a registration writes meanwhile is in the table before
	// it is in memory, so it is never taken for a stale one.
	p.mm.MmapSem.RLock()
	var b [1]byte
	if p.as.ReadMemory(addr, b[:]) != nil {
		p.mm.MmapSem.RUnlock()
		return false
	}
	if b[0] == install.BreakpointInsn && w.eng.LookupLocked(p.mm, addr) == nil {
		if s.insn[0] == install.BreakpointInsn {
			p.mm.MmapSem.RUnlock()
			return false
		}
		w.log("pid %d: stale breakpoint at %#x restored", p.pid, addr)
		if p.writeBreakpointLocked(addr, s, false) != nil {
			p.mm.MmapSem.RUnlock()
			return false
		}
	}
	p.mm.MmapSem.RUnlock()
	return ptracePokeRip(th.tid, addr) == nil
}

// trapDetach handles a SIGTRAP stop of a thread being detached: a trap on
// one of our (now restored) breakpoints restarts the instruction and
// detaches. It reports whether it detached th.
func (w *World) trapDetach(th *thread) bool {
	p := th.proc
	var si siginfo
	if p == nil || ptraceGetSiginfo(th.tid, &si) != nil || si.code() != siKernel {
		return false
	}
	rip, err := ptracePeekRip(th.tid)
	if err != nil {
		return false
	}
	addr := rip - 1
	if isTramp(th, addr) {
		// A return during the detach: dispatched, then th goes on
		// at its caller, and its other returns are put back.
		if !w.retHit(th, true) {
			return false
		}
		w.detachNow(th, 0)
		return true
	}
	u, ever := w.lookup(p, addr)
	if u == nil && !ever {
		return false
	}
	var b [1]byte
	if p.as.ReadMemory(addr, b[:]) == nil && b[0] == install.BreakpointInsn && u != nil {
		// Still in place: count and step over, then detach.
		w.nHits.Add(1)
		w.eng.Dispatch(u, probes.Hit{Pid: th.tgid, Tid: th.tid, Vaddr: addr, Time: time.Now().UnixNano()})
		if !w.stepOver(th, u, addr) {
			return true
		}
	} else if !w.restart(th, addr) {
		return false
	}
	w.detachNow(th, 0)
	return true
}
