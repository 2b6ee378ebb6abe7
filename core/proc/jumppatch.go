package proc

import (
	"bytes"
	"errors"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Switching breakpoints to jump sites and back (see jump.go for the
// design). The live flag of a site changes only under its MM's mmap_sem:
// for writing on the tracer (switchJumps), for reading with the uprobe's
// i_mutex in the engine's remove hook (unjumpLocked): the two never run at
// once, and a site is never half switched when the other looks.

// maxJumpTries bounds the attempts to switch a site that keep finding a
// thread inside its displaced range; jumpRetry is the first pause between
// attempts (doubled each time, up to a second).
const (
	maxJumpTries = 30
	jumpRetry    = time.Millisecond
	// jumpStopWait bounds a switch's wait for the threads to stop.
	jumpStopWait = 50 * time.Millisecond
)

// wantJump notes, from the install hook, that the engine's breakpoint of u
// at vaddr is in: the tracer will try to make it a jump site. Any
// goroutine; p.mm.MmapSem is held.
func (p *process) wantJump(vaddr uint64, u *probes.Uprobe) {
	w := p.as.w
	if u.Arch == nil || u.Arch.Jump == nil || w.opts.NoJump || p.lazyJump {
		return
	}
	w.jumpMu.Lock()
	if p.jump.want == nil {
		p.jump.want = map[uint64]*probes.Uprobe{}
	}
	p.jump.want[vaddr] = u
	post := !p.jump.posted
	p.jump.posted = true
	w.jumpMu.Unlock()
	if post {
		w.t.post(func() { w.serveJumps(p) })
	}
}

// serveJumps switches the sites wantJump noted. On the tracer thread.
func (w *World) serveJumps(p *process) {
	w.jumpMu.Lock()
	want := p.jump.want
	p.jump.want, p.jump.posted = nil, false
	w.jumpMu.Unlock()
	w.switchJumps(p, want)
}

// switchJumps makes the sites of want (vaddr → uprobe) jump sites where
// they can be: every thread of p stopped, none inside a displaced range,
// the jmp written in one write while they are stopped (jump.go). Sites
// with a thread inside are tried again later. On the tracer thread.
func (w *World) switchJumps(p *process, want map[uint64]*probes.Uprobe) {
	if p.gone || p.detaching || len(want) == 0 {
		return
	}
	var todo []*jumpSite
	for vaddr, u := range want {
		if s := w.jumpSiteFor(p, vaddr, u); s.why == "" && w.countOnly(u) {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		return
	}
	if p.startup && p.startSwitch {
		// The first switch of a new image while its loader runs
		// (stats.go).
		p.startSwitch = false
		defer spent(&w.execProf.switches, &w.execProf.switched, time.Now())
	}
	if tid := w.stopAll(p, jumpStopWait); tid != 0 {
		// A thread that does not stop now (a vfork parent until its
		// child execs, a thread in an exec that waits for its siblings'
		// exit events): nothing is written while a thread of p runs.
		// Try again later; the tracer does not wait meanwhile.
		retry := map[uint64]*probes.Uprobe{}
		for _, s := range todo {
			if s.tries++; s.tries >= maxJumpTries {
				w.setWhy(s, fmt.Sprintf("thread %d does not stop", tid))
			} else if u := w.siteU(s); u != nil {
				retry[s.vaddr] = u
			}
		}
		w.retryJumps(p, retry, todo[0].tries)
		return
	}
	if w.deferredEvent(p, unix.PTRACE_EVENT_EXEC) {
		return // a new image: these sites are gone
	}
	th := w.injectable(p)
	for _, s := range todo {
		if s.tramp != 0 {
			continue
		}
		if th == nil {
			// No thread to inject the mapping of a region through
			// (each is in an event stop): the next trap on the site
			// makes its trampoline; try again then.
			s.tries++
			continue
		}
		if err := w.trampFor(th, s); err != nil {
			w.setWhy(s, "no trampoline: "+err.Error())
		}
		if th.dead {
			return // dropped when its deferred stop is handled
		}
	}
	retry := map[uint64]*probes.Uprobe{}
	for _, s := range todo {
		if u := w.siteU(s); s.tramp == 0 && s.why == "" && u != nil && s.tries < maxJumpTries {
			retry[s.vaddr] = u
		}
	}
	rips := map[int]uint64{}
	for _, t := range p.threads {
		if t.state == stopped && !t.dead && !t.execed {
			if rip, err := ptracePeekRip(t.tid); err == nil {
				rips[t.tid] = rip
			}
			w.noteFs(t)
		}
	}
	w.lockMM(p.mm)
	for _, s := range todo {
		u := w.siteU(s)
		if s.why != "" || u == nil || s.tramp == 0 || s.live.Load() || w.eng.LookupLocked(p.mm, s.vaddr) != u {
			continue
		}
		if a := w.othersInside(p, s); a != 0 {
			w.setBlocked(s, a) // the removal of the other one asks again
			continue
		}
		if a := p.everInside(s); a != 0 {
			// A thread may have stopped at that breakpoint, between
			// displaced instructions, and be in a signal handler now:
			// it would return into the jmp's bytes (the check below
			// sees rips, not the contexts saved on stacks).
			w.setWhy(s, fmt.Sprintf("a breakpoint was at %#x, inside its displaced instructions (a thread may still be between them)", a))
			continue
		}
		if tid, inside := w.threadInside(p, s, rips); inside {
			if s.tries++; s.tries >= maxJumpTries {
				w.setWhy(s, fmt.Sprintf("thread %d stays inside the displaced instructions", tid))
			} else {
				retry[s.vaddr] = u
			}
			continue
		}
		if err := p.jumpLocked(s); errors.Is(err, syscall.ESRCH) {
			continue // exiting, or unmapped: no site here any more
		} else if err != nil {
			w.setWhy(s, err.Error())
			w.errorf("pid %d: jump site %#x: %v", p.pid, s.vaddr, err)
		}
	}
	p.mm.MmapSem.Unlock()
	w.retryJumps(p, retry, todo[0].tries)
}

// retryJumps tries the switch of retry again after a pause that doubles
// with tries (jumpRetry, a second at most). On the tracer thread.
func (w *World) retryJumps(p *process, retry map[uint64]*probes.Uprobe, tries int) {
	if len(retry) > 0 {
		d := min(jumpRetry<<min(tries, 10), time.Second)
		w.after(d, func() { w.switchJumps(p, retry) })
	}
}

// threadInside reports a thread of p (by rips, the stopped threads' rip)
// that is between the displaced instructions of s, where the jmp's bytes
// would land it mid-instruction: after a displaced instruction (rip, or
// rip-2 for a restartable system call), or in a one-instruction slot of
// the site whose jump back lands there. A thread stopped by the site's own
// int3 (rip = vaddr+1, its trap not yet handled) is not inside: its trap
// steps over the whole range.
func (w *World) threadInside(p *process, s *jumpSite, rips map[int]uint64) (int, bool) {
	lo, hi := s.vaddr, s.vaddr+uint64(s.plan.Len)
	for tid, rip := range rips {
		if rip == lo+1 && w.deferredTrap(tid) {
			continue
		}
		if (rip > lo && rip < hi) || (rip-2 > lo && rip-2 < hi) {
			return tid, true
		}
		if _, o, ok := p.xol.slotAt(rip); ok && o.vaddr >= lo && o.vaddr < hi {
			return tid, true
		}
		if o := w.enteredTramp(p, tid, rip); o != nil && o != s && o.vaddr < hi && o.vaddr+uint64(o.plan.Len) > lo {
			// In another site's trampoline (or stopped at its int3,
			// its trap to be stepped over through it) whose displaced
			// range overlaps this one's: it jumps back into the
			// middle of this one's (mixed+0's trampoline steps over
			// push, mov and imul and returns to +8, inside a jmp at
			// +4: a spawned process died of it).
			return tid, true
		}
	}
	return 0, false
}

// enteredTramp returns the site whose trampoline the thread tid (stopped
// at rip) is in, or will be stepped over through: stopped at its int3, the
// trap not yet handled. Nil if none. Preconditions: on the tracer thread.
func (w *World) enteredTramp(p *process, tid int, rip uint64) *jumpSite {
	if o := p.inTramp(rip); o != nil {
		return o
	}
	if !w.deferredTrap(tid) {
		return nil
	}
	w.jumpMu.Lock()
	defer w.jumpMu.Unlock()
	return p.jump.sites[rip-1] // nil if none
}

// injectable returns a stopped thread of p that a system call can be
// injected through: one in the interrupt stop stopThread put it in (not
// an event stop inside a clone, fork or exec, whose event message and
// system call an injection would lose), or nil.
func (w *World) injectable(p *process) *thread {
	for _, d := range w.deferred {
		th := w.threads[d.tid]
		if th == nil || th.proc != p || th.dead || th.execed || !d.st.Stopped() {
			continue
		}
		if d.st.StopSignal() != unix.SIGTRAP || d.st.TrapCause() != unix.PTRACE_EVENT_STOP {
			continue
		}
		// Nothing pending for it: an interrupt that came with the
		// SIGTRAP of an int3 it just executed stops it first, and the
		// injection would lose that trap (the thread would run on
		// after the int3, its instruction skipped).
		st, err := procfs.ReadStatus(fmt.Sprintf("/proc/%d/task/%d/status", th.tgid, th.tid))
		if err == nil && st.SigPnd == 0 {
			return th
		}
	}
	return nil
}

// deferredEvent reports whether a stop deferred for a thread of p is the
// ptrace event ev.
func (w *World) deferredEvent(p *process, ev int) bool {
	for _, d := range w.deferred {
		if th := w.threads[d.tid]; th != nil && th.proc == p && d.st.Stopped() && d.st.TrapCause() == ev {
			return true
		}
	}
	return false
}

// deferredTrap reports whether the stop reaped for tid and deferred (by
// stopThread) is a SIGTRAP signal-delivery stop (an int3's).
func (w *World) deferredTrap(tid int) bool {
	for _, d := range w.deferred {
		// A signal-delivery stop, not the interrupt's PTRACE_EVENT_STOP
		// (whose stop signal is SIGTRAP too).
		if d.tid == tid && d.st.Stopped() && d.st.StopSignal() == unix.SIGTRAP && d.st.TrapCause() == 0 {
			return true
		}
	}
	return false
}

// jumpLocked writes the jmp of s over its int3: the checked write path's
// checks (the address maps the file at the offset; the bytes are our int3
// and the rest of the displaced range as in the file), the ledger told of
// the bytes the jmp covers, then the 5 bytes in one write.
// Preconditions: p.mm.MmapSem held for writing; every thread of p stopped.
func (p *process) jumpLocked(s *jumpSite) error {
	if err := p.checkMapped(s.vaddr, s.site); err != nil {
		return err
	}
	cur := make([]byte, s.plan.Len)
	if err := p.as.ReadMemory(s.vaddr, cur); err != nil {
		return fmt.Errorf("read the displaced range: %w", err)
	}
	want := append([]byte{0xcc}, s.plan.Orig[1:]...)
	if !bytes.Equal(cur, want) {
		return fmt.Errorf("displaced range holds % x, not the int3 and % x", cur, s.plan.Orig[1:])
	}
	jmp, err := install.JumpInsn(s.vaddr, s.tramp)
	if err != nil {
		return err
	}
	if led := p.as.w.opts.Ledger; led != nil && !led.SetTail(p.pid, s.vaddr, s.plan.Orig[1:]) {
		return fmt.Errorf("no ledger entry for the int3 at %#x", s.vaddr)
	}
	if err := p.as.WriteMemory(s.vaddr, jmp); err != nil {
		return fmt.Errorf("write the jump: %w", err)
	}
	s.live.Store(true)
	return nil
}

// unjumpLocked puts the int3 back in place of the jmp of s, the jmp's tail
// after it (no thread can be inside the range: the int3 stops them first,
// and a trapped one steps over the whole range). Byte 0 stays the int3:
// the engine's breakpoint, removed (or not) by the caller.
// Preconditions: p.mm.MmapSem held.
func (p *process) unjumpLocked(s *jumpSite) error {
	if !s.live.Load() {
		return nil
	}
	if err := p.as.WriteMemory(s.vaddr, []byte{0xcc}); err != nil {
		return goneIfFault(err)
	}
	if err := p.as.WriteMemory(s.vaddr+1, s.plan.Orig[1:install.JumpLen]); err != nil {
		return goneIfFault(err)
	}
	s.live.Store(false)
	return nil
}

// othersInside returns the address of a breakpoint other than s's inside
// its displaced range (the engine's, or the world's own), or 0.
// Preconditions: on the tracer thread; p.mm.MmapSem held.
func (w *World) othersInside(p *process, s *jumpSite) uint64 {
	for a := s.vaddr + 1; a < s.vaddr+uint64(s.plan.Len); a++ {
		if w.eng.LookupLocked(p.mm, a) != nil || p.internalBp(a) {
			return a
		}
	}
	return 0
}

// setBlocked records the result of othersInside for s.
func (w *World) setBlocked(s *jumpSite, a uint64) {
	w.jumpMu.Lock()
	s.blocked = a
	w.jumpMu.Unlock()
}

// coverJump is the install hook's part for a breakpoint about to go in at
// vaddr: a jump site whose displaced range holds vaddr goes back to its
// int3 first (its jmp may cover the bytes, and its trampoline would run
// the instruction without its trap), and stays so while the other is in.
// Preconditions: p.mm.MmapSem held, and the i_mutex of the inode mapped
// there (the live flag of the covering site, of the same file, is stable).
func (p *process) coverJump(vaddr uint64) error {
	w := p.as.w
	var cover []*jumpSite
	w.jumpMu.Lock()
	for _, s := range p.jump.sites {
		if s.plan != nil && s.vaddr < vaddr && vaddr < s.vaddr+uint64(s.plan.Len) {
			s.blocked = vaddr
			cover = append(cover, s)
		}
	}
	w.jumpMu.Unlock()
	for _, s := range cover {
		if err := p.unjumpLocked(s); err != nil {
			return err
		}
	}
	return nil
}

// everInside returns an address inside s's displaced range (past its first
// byte) where p ever had a breakpoint (everBp), or 0.
func (p *process) everInside(s *jumpSite) uint64 {
	if s.plan == nil {
		return 0
	}
	p.everMu.Lock()
	defer p.everMu.Unlock()
	for a := s.vaddr + 1; a < s.vaddr+uint64(s.plan.Len); a++ {
		if _, ok := p.everBp[a]; ok {
			return a
		}
	}
	return 0
}

// uncoverJumps is the remove hook's part after the breakpoint at vaddr
// went: the sites it blocked are looked at again, and stay traps for good
// (switchJumps: everInside), with that reason in status.
// Preconditions: p.mm.MmapSem held.
func (p *process) uncoverJumps(vaddr uint64) {
	w := p.as.w
	again := map[uint64]*probes.Uprobe{}
	w.jumpMu.Lock()
	for _, s := range p.jump.sites {
		if s.blocked == vaddr {
			s.blocked = 0
			if s.u != nil {
				again[s.vaddr] = s.u
			}
		}
	}
	w.jumpMu.Unlock()
	for va, u := range again {
		p.wantJump(va, u)
	}
}

// removeJump is the remove hook's part for a jump site at vaddr: the jmp
// goes (unjumpLocked) and its counts are flushed and its counting ends.
// Preconditions: p.mm.MmapSem held.
func (p *process) removeJump(vaddr uint64) error {
	w := p.as.w
	w.jumpMu.Lock()
	s := p.jump.sites[vaddr]
	w.jumpMu.Unlock()
	if s == nil {
		return nil
	}
	err := p.unjumpLocked(s)
	w.forgetSite(s)
	return err
}

// cleanJumpCopies puts an int3 (and the original bytes after it) back where
// the fork child c inherited a jmp of its parent pp, or a site of pp half
// taken back: the copy would count c's hits in pp's counters, and a fork
// made while pp's jmp was being undone (an int3 written over the jmp, its
// tail not yet restored) copies an int3 followed by the jmp's bytes, which
// a later restore of byte 0 would leave as garbage (TestStressNewProcesses
// /pokedata: a fork child's "found [cc 5b c4 da ff ...]", then SIGTRAP).
// c's own install hooks then find the int3 and make c its own jump sites,
// with its own trampolines and counters.
// Preconditions: on the tracer thread; pp.mm.MmapSem held for writing (no
// site of pp switches meanwhile); c has not run since the fork.
func (w *World) cleanJumpCopies(pp, c *process) {
	w.jumpMu.Lock()
	var sites []*jumpSite
	for _, s := range pp.jump.sites {
		if s.plan != nil && len(s.plan.Orig) >= install.JumpLen {
			sites = append(sites, s)
		}
	}
	w.jumpMu.Unlock()
	for _, s := range sites {
		b := make([]byte, install.JumpLen)
		if c.as.ReadMemory(s.vaddr, b) != nil {
			continue
		}
		orig := s.plan.Orig[:install.JumpLen]
		if b[0] != 0xe9 && (b[0] != 0xcc || string(b[1:]) == string(orig[1:])) {
			continue // the file's bytes, or an int3 before them
		}
		if c.checkMapped(s.vaddr, s.site) != nil {
			continue // another file there now: not the site's bytes
		}
		fix := append([]byte{0xcc}, orig[1:]...)
		if err := c.as.WriteMemory(s.vaddr, fix); err != nil {
			w.errorf("fork child %d of %d: jump copy at %#x: %v", c.pid, pp.pid, s.vaddr, err)
		}
	}
}
