package proc

import (
	"fmt"
	"strings"
	"sync"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// The engine's view of the jump sites (jump.go): its Flush and Changed
// hooks, which reach the world through the live worlds (the hooks carry
// none), and how status shows a site.

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
// before (core/manager's WorldSettler): a probe's sites append events (set
// at once by changed), or, without FSGSBASE, are back on the
// trap path when a reader of its events starts. (changed's work runs in
// order with the requests: postNext.)
func (w *World) Settle() { w.t.do(func() {}) }

// changed is the engine's Changed hook for this world: the tracer looks at
// every site of u again. Any goroutine; must not wait.
func (w *World) changed(u *probes.Uprobe) {
	if u.Arch == nil || u.Arch.Jump == nil || w.opts.NoJump {
		return
	}
	w.streamChanged(u) // at once: a new reader sees every hit from now on
	// In order with the requests, not after the background switches: a
	// consumer that wants every hit (a Handler, registers) takes the
	// sites back to the trap path before the next request.
	w.t.postNext(func() { w.reconsider(u) })
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
		if w.countOnly(u) {
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
	var blocked, tramp uint64
	if s != nil {
		live, why, blocked, tramp = s.live.Load(), s.why, s.blocked, s.tramp
	}
	w.jumpMu.Unlock()
	switch {
	case live:
		return "jump"
	case why != "":
		return "trap: " + why
	case blocked != 0:
		return fmt.Sprintf("trap: another breakpoint at %#x is inside its displaced instructions", blocked)
	}
	if why = w.jumpable(u.Arch); why != "" {
		return "trap: " + why
	}
	if why = notCountOnly(u, w.evOK); why != "" {
		return "trap: " + why
	}
	if as.proc.lazyJump && tramp == 0 {
		return "trap: a jump from its first hit (the process started after the probe)"
	}
	return "trap: not switched yet"
}

// notCountOnly says why u is not CountOnly ("" if it is).
func notCountOnly(u *probes.Uprobe, evOK bool) string {
	var why []string
	for _, c := range u.Consumers() {
		switch {
		case c.RetHandler != nil:
			why = append(why, "a return probe")
		case c.WantRegs:
			why = append(why, "fetch arguments")
		case c.Handler != nil && c.Busy != nil && c.Busy() && !evOK:
			why = append(why, "its events are being read")
		case c.Handler != nil && c.Busy == nil:
			why = append(why, "a handler for every hit")
		}
	}
	return strings.Join(why, ", ")
}
