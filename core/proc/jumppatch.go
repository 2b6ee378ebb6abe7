package proc

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
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
)

// liveWorlds are the worlds whose engines' Flush and Changed hooks reach
// (EngineOptions): the hooks carry no world, and a process has one World.
var liveWorlds struct {
	sync.Mutex
	ws []*World
}

func addLiveWorld(w *World) {
	liveWorlds.Lock()
	liveWorlds.ws = append(liveWorlds.ws, w)
	liveWorlds.Unlock()
}

func removeLiveWorld(w *World) {
	liveWorlds.Lock()
	for i, x := range liveWorlds.ws {
		if x == w {
			liveWorlds.ws = append(liveWorlds.ws[:i:i], liveWorlds.ws[i+1:]...)
			break
		}
	}
	liveWorlds.Unlock()
}

func eachWorld(f func(w *World)) {
	liveWorlds.Lock()
	ws := append([]*World(nil), liveWorlds.ws...)
	liveWorlds.Unlock()
	for _, w := range ws {
		f(w)
	}
}

// flushHook and changedHook are the engine's EngineOptions.Flush and
// Changed.
func flushHook(u *probes.Uprobe)   { eachWorld(func(w *World) { w.flushJumps(u) }) }
func changedHook(u *probes.Uprobe) { eachWorld(func(w *World) { w.changed(u) }) }

// Settle waits until the world has acted on every Engine.Changed call made
// before (core/manager's WorldSettler): a probe's sites are back on the
// trap path when a reader of its events starts.
func (w *World) Settle() { w.t.do(func() {}) }

// wantJump notes, from the install hook, that the engine's breakpoint of u
// at vaddr is in: the tracer will try to make it a jump site. Any
// goroutine; p.mm.MmapSem is held.
func (p *process) wantJump(vaddr uint64, u *probes.Uprobe) {
	w := p.as.w
	if u.Arch == nil || u.Arch.Jump == nil || w.opts.NoJump {
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

// changed is the engine's Changed hook for this world: the tracer looks at
// every site of u again. Any goroutine; must not wait.
func (w *World) changed(u *probes.Uprobe) {
	if u.Arch == nil || u.Arch.Jump == nil || w.opts.NoJump {
		return
	}
	w.t.post(func() { w.reconsider(u) })
}

// reconsider switches every site of u to the jump (u is CountOnly) or back
// to the trap path (it is not). On the tracer thread.
func (w *World) reconsider(u *probes.Uprobe) {
	want := map[*process]map[uint64]*probes.Uprobe{}
	w.eng.Sites(u.Inode, u.Offset, func(s probes.Site) bool {
		if as, ok := s.MM.AS.(*addressSpace); ok && as.w == w && s.Installed {
			if want[as.proc] == nil {
				want[as.proc] = map[uint64]*probes.Uprobe{}
			}
			want[as.proc][s.Vaddr] = u
		}
		return true
	})
	for p, m := range want {
		if u.CountOnly() {
			w.switchJumps(p, m)
			continue
		}
		w.lockMM(p.mm)
		for vaddr := range m {
			w.jumpMu.Lock()
			s := p.jump.sites[vaddr]
			w.jumpMu.Unlock()
			if s != nil {
				if err := p.unjumpLocked(s); err != nil {
					w.errorf("pid %d: jump site %#x back to the trap path: %v", p.pid, vaddr, err)
				}
			}
		}
		p.mm.MmapSem.Unlock()
	}
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
		if s := w.jumpSiteFor(p, vaddr, u); s.why == "" && !s.live && u.CountOnly() {
			todo = append(todo, s)
		}
	}
	if len(todo) == 0 {
		return
	}
	for _, th := range p.threads {
		if th.state != stopped {
			if err := w.stopThread(th); err != nil {
				w.log("pid %d: jump sites: stop tid %d: %v", p.pid, th.tid, err)
			}
		}
	}
	th := p.stoppedThread()
	if th == nil {
		return
	}
	for _, s := range todo {
		if err := w.trampFor(th, s); err != nil {
			s.why = "no trampoline: " + err.Error()
		}
		if th.dead {
			return // dropped when its deferred stop is handled
		}
	}
	rips := map[int]uint64{}
	for _, t := range p.threads {
		if t.state == stopped && !t.dead && !t.execed {
			if rip, err := ptracePeekRip(t.tid); err == nil {
				rips[t.tid] = rip
			}
		}
	}
	retry := map[uint64]*probes.Uprobe{}
	w.lockMM(p.mm)
	for _, s := range todo {
		u := s.u
		if s.why != "" || u == nil || w.eng.LookupLocked(p.mm, s.vaddr) != u {
			continue
		}
		if tid, inside := w.threadInside(p, s, rips); inside {
			if s.tries++; s.tries >= maxJumpTries {
				s.why = fmt.Sprintf("thread %d stays inside the displaced instructions", tid)
			} else {
				retry[s.vaddr] = u
			}
			continue
		}
		if err := p.jumpLocked(s); err != nil {
			s.why = err.Error()
			w.errorf("pid %d: jump site %#x: %v", p.pid, s.vaddr, err)
		}
	}
	p.mm.MmapSem.Unlock()
	if len(retry) > 0 {
		d := min(jumpRetry<<min(todo[0].tries, 10), time.Second)
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
	}
	return 0, false
}

// deferredTrap reports whether the stop reaped for tid and deferred (by
// stopThread) is a SIGTRAP.
func (w *World) deferredTrap(tid int) bool {
	for _, d := range w.deferred {
		if d.tid == tid && d.st.Stopped() && d.st.StopSignal() == unix.SIGTRAP {
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
	s.live = true
	return nil
}

// unjumpLocked puts the int3 back in place of the jmp of s, the jmp's tail
// after it (no thread can be inside the range: the int3 stops them first,
// and a trapped one steps over the whole range). Byte 0 stays the int3:
// the engine's breakpoint, removed (or not) by the caller.
// Preconditions: p.mm.MmapSem held.
func (p *process) unjumpLocked(s *jumpSite) error {
	if !s.live {
		return nil
	}
	if err := p.as.WriteMemory(s.vaddr, []byte{0xcc}); err != nil {
		return goneIfFault(err)
	}
	if err := p.as.WriteMemory(s.vaddr+1, s.plan.Orig[1:install.JumpLen]); err != nil {
		return goneIfFault(err)
	}
	s.live = false
	return nil
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

// SiteMode says how the breakpoint the engine has at vaddr of mm is hit:
// "jump", or "trap: REASON" (core/manager's WorldJumps, for status).
// Preconditions: mm.MmapSem held for reading.
func (w *World) SiteMode(mm *rmap.MM, vaddr uint64) string {
	as, ok := mm.AS.(*addressSpace)
	if !ok || as.w != w {
		return ""
	}
	u := w.eng.LookupLocked(mm, vaddr)
	if u == nil {
		return ""
	}
	w.jumpMu.Lock()
	s := as.proc.jump.sites[vaddr]
	var live bool
	var why string
	if s != nil {
		live, why = s.live, s.why
	}
	w.jumpMu.Unlock()
	switch {
	case live:
		return "jump"
	case why != "":
		return "trap: " + why
	}
	if why = w.jumpable(u.Arch); why != "" {
		return "trap: " + why
	}
	if why = notCountOnly(u); why != "" {
		return "trap: " + why
	}
	return "trap: not switched yet"
}

// notCountOnly says why u is not CountOnly ("" if it is).
func notCountOnly(u *probes.Uprobe) string {
	var why []string
	for _, c := range u.Consumers() {
		switch {
		case c.RetHandler != nil:
			why = append(why, "a return probe")
		case c.WantRegs:
			why = append(why, "fetch arguments")
		case c.Busy != nil && c.Busy():
			why = append(why, "its events are being read")
		}
	}
	return strings.Join(why, ", ")
}

// cleanJumpCopies puts an int3 (and the original bytes after it) back where
// the fork child c inherited a jmp of its parent pp: the copy would count
// c's hits in pp's counters. c's own install hooks then find the int3 and
// make c its own jump sites, with its own trampolines and counters.
// Preconditions: on the tracer thread; pp.mm.MmapSem held for writing (no
// site of pp switches meanwhile); c has not run since the fork.
func (w *World) cleanJumpCopies(pp, c *process) {
	w.jumpMu.Lock()
	var live []*jumpSite
	for _, s := range pp.jump.sites {
		if s.live {
			live = append(live, s)
		}
	}
	w.jumpMu.Unlock()
	for _, s := range live {
		b := make([]byte, install.JumpLen)
		if c.as.ReadMemory(s.vaddr, b) != nil || b[0] != 0xe9 {
			continue
		}
		fix := append([]byte{0xcc}, s.plan.Orig[1:install.JumpLen]...)
		if err := c.as.WriteMemory(s.vaddr, fix); err != nil {
			w.errorf("fork child %d of %d: jump copy at %#x: %v", c.pid, pp.pid, s.vaddr, err)
		}
	}
}
