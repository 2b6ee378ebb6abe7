package proc

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/internal/ledger"
)

// Jump sites: hits that never stop the process. Where the engine has a
// breakpoint whose uprobe only counts (probes.Uprobe.CountOnly) and whose
// instructions can be displaced (install.Plan.Jump, decided from the file
// by core/objfile), the tracer replaces the int3 by a 5-byte jmp into a
// trampoline (install.JumpPlan.Trampoline) that counts the hit with a
// locked increment in memory shared with the daemon, runs the displaced
// instructions relocated and jumps back: the tracee never stops.
//
// Memory. A process's trampolines and counters live in jump regions: one
// memfd per region, created in the tracee by injected system calls
// (memfd_create, ftruncate, two mmaps: jumpCodeSize bytes of trampolines
// mapped shared r-x, then jumpDataSize bytes of data mapped shared rw — the
// counters, the events flags and ring — within ±1 GiB of the site),
// adopted by later attachments (jumpadopt.go), and taken into the daemon by pidfd_getfd and
// mapped there too: the daemon writes trampolines and reads counters
// through its own mapping, without a system call, and still reads them
// after the tracee died (SIGKILL included). A region is never unmapped nor
// a trampoline rewritten while the address space lives (a signal frame
// may point into it); a site removed and registered again gets its old
// trampoline back.
//
// Counts. Each site has one counter; World.flushJumps (the engine's
// EngineOptions.Flush) moves what it counted since the last flush to the
// uprobe's consumers (probes.Engine.DispatchCount, with the consumers'
// process filters): before every hit count is read, before the consumer
// set changes, and when the site or its process goes away. Events, while
// someone reads them, go through a ring in the same memory (jumpev.go).
//
// Patching (jumppatch.go): the int3 goes in first (the engine's install
// hook); then the tracer stops every thread of the process, checks that
// none is inside the displaced range, and writes the jmp in one write while
// they are stopped. A trap on the int3 of a jump site meanwhile (or while
// the site is back on the trap path) steps over the whole displaced range
// through the trampoline's relocated instructions, so no thread is ever
// left between displaced instructions. Removal: int3 first, then the
// jmp's tail restored, then byte 0 (the remove hook).

// The layout of a region: trampolines (shared r-x), then the data
// (shared rw): a counter and an events flag per trampoline slot, the
// events ring's head (its own page) and the ring (jumpev.go).
const (
	trampStride    = install.MaxTrampEvSize
	jumpCodeSize   = 64 << 10
	jumpSlots      = jumpCodeSize / trampStride
	jumpCtrOff     = jumpCodeSize
	jumpCtrSize    = install.EvCPUSlots * install.EvCPUStride // a site's counters (per CPU)
	jumpFlagOff    = jumpCtrOff + jumpSlots*jumpCtrSize
	jumpHeadOff    = jumpFlagOff + 4<<10
	jumpRingOff    = jumpHeadOff + 4<<10
	jumpRingRecs   = 1 << 16
	jumpDataSize   = jumpRingOff - jumpCodeSize + jumpRingRecs*install.EvRecSize
	jumpRegionSize = jumpCodeSize + jumpDataSize
)

// jumpName is the name of the memfds, as /proc/PID/maps shows them
// ("/memfd:uprobefs-jump (deleted)").
var jumpName = []byte("uprobefs-jump\x00")

// jumpRegion is one memfd of trampolines and counters in a process.
type jumpRegion struct {
	addr  uint64 // in the tracee: trampolines at addr, the data at addr+jumpCodeSize
	local []byte // the daemon's mapping of the whole memfd
	used  int    // trampoline slots used (slot 0: the header, jumpadopt.go)
	// adopted: left by an earlier attachment (its trampolines may be
	// reused, jumpadopt.go).
	adopted bool
	// ino is the memfd's inode: a region is counted for one process
	// only (World.jumpInos), though a fork child maps its parent's too.
	ino uint64
	// sites are the sites of its slots (by slot), tail the next event
	// record to read (stuckAt/Since: since when it is claimed but not
	// published), pid the process (jumpev.go); under World.jumpMu.
	sites      map[uint32]*jumpSite
	tail       uint64
	stuckAt    uint64
	stuckSince time.Time
	pid        int
}

// jumpSite is one (process, address) where a jump site may be or is.
// Created on the tracer thread; live changes under the MM's mmap_sem (see
// jumppatch.go); u, pid, ctr and last under World.jumpMu.
type jumpSite struct {
	vaddr uint64
	site  bpSite
	plan  *install.JumpPlan
	tramp uint64 // trampoline address in the tracee (0: none yet)
	entry uint64 // its relocated instructions
	ctr   *uint64
	last  uint64 // the counter's value already dispatched
	// flag is the site's events flag (non-zero: the trampoline appends
	// records, jumpev.go), popf the address of the trampoline's popfq
	// (jumpsig.go), ev the events memory it was made with (nil: none).
	flag *uint64
	popf uint64
	ev   *install.EvMem
	reg  *jumpRegion
	// u is the uprobe counted (nil while the engine has no breakpoint
	// here), pid the process the counts are dispatched for.
	u   *probes.Uprobe
	pid int
	// live: the jmp is written (else byte 0 is the engine's int3).
	// Changed under the MM's mmap_sem (jumppatch.go), read anywhere.
	live atomic.Bool
	// why is, when not empty, why this site stays on the trap path in
	// this process. Written on the tracer under World.jumpMu (setWhy).
	why string
	// tries counts the attempts to switch to the jump that found a
	// thread inside the displaced range.
	tries int
	// blocked is the address of another breakpoint inside the displaced
	// range (0: none), under World.jumpMu: while there is one the site
	// is no jump and its trap steps over its first instruction alone
	// (the trampoline would run the other one without its trap).
	blocked uint64
}

// jumpState is a process's jump regions and sites. Tracer-owned, except
// as jumpSite says.
type jumpState struct {
	regions []*jumpRegion
	sites   map[uint64]*jumpSite // by vaddr; under World.jumpMu
	// want are the sites whose int3 went in since the tracer last
	// looked (the install hook), under World.jumpMu; posted says a
	// tracer request for them is queued.
	want   map[uint64]*probes.Uprobe
	posted bool
	// adopted: the regions an earlier attachment left were looked for.
	adopted bool
}

// jumpable returns why the breakpoint of plan cannot become a jump site
// ("" if it can), from the plan and the options alone. Any goroutine.
func (w *World) jumpable(plan *install.Plan) string {
	switch {
	case plan == nil || plan.Jump == nil:
		if plan != nil && plan.NoJump != "" {
			return plan.NoJump
		}
		return "no jump plan"
	case w.opts.NoJump:
		return "jump sites disabled (trap mount option)"
	case len(plan.Jump.Orig)-1 > ledger.MaxTail:
		return fmt.Sprintf("displaced range of %d bytes too long for the ledger", plan.Jump.Len)
	}
	return ""
}

// jumpableIn is jumpable, and the process's threads: a call emulated in a
// trampoline would leave a shadow stack behind. On the tracer thread.
func (w *World) jumpableIn(p *process, plan *install.Plan) string {
	if why := w.jumpable(plan); why != "" {
		return why
	}
	if plan.Jump.EmulatesCall() {
		for _, th := range p.threads {
			if w.shadowStack(th) {
				return "a call in the displaced range and a shadow stack"
			}
		}
	}
	return ""
}

// jumpSiteFor returns p's site at vaddr for uprobe u, made on first use.
// Preconditions: on the tracer thread.
func (w *World) jumpSiteFor(p *process, vaddr uint64, u *probes.Uprobe) *jumpSite {
	w.jumpMu.Lock()
	defer w.jumpMu.Unlock()
	s := p.jump.sites[vaddr]
	if s != nil && (s.site.key != u.Inode.Key || s.site.off != u.Offset ||
		(s.plan != nil && u.Arch != nil && u.Arch.Jump != nil && string(s.plan.Orig) != string(u.Arch.Jump.Orig))) {
		// Another file or instruction here now (a new mapping): a new
		// site (the old one's trampoline stays, unused).
		w.unindexLocked(s)
		s = nil
	}
	if s == nil {
		s = &jumpSite{vaddr: vaddr, site: uprobeSite(u), pid: p.pid}
		if u.Arch != nil {
			s.plan = u.Arch.Jump
		}
		s.why = w.jumpableIn(p, u.Arch)
		if p.jump.sites == nil {
			p.jump.sites = map[uint64]*jumpSite{}
		}
		p.jump.sites[vaddr] = s
	}
	if s.u != u {
		w.unindexLocked(s)
		s.u = u
		if s.ctr != nil {
			s.last = s.count()
		}
		w.indexLocked(s)
	}
	return s
}

// count returns what s's counters counted (the sum of its CPUs' with
// per-CPU counters). Preconditions: s.ctr != nil.
func (s *jumpSite) count() uint64 {
	if s.ev == nil || !s.ev.PerCPU {
		return atomic.LoadUint64(s.ctr)
	}
	var n uint64
	for i := range install.EvCPUSlots {
		n += atomic.LoadUint64((*uint64)(unsafe.Add(unsafe.Pointer(s.ctr), i*install.EvCPUStride)))
	}
	return n
}

// siteU returns the uprobe s counts for (nil: none now).
func (w *World) siteU(s *jumpSite) *probes.Uprobe {
	w.jumpMu.Lock()
	defer w.jumpMu.Unlock()
	return s.u
}

// setWhy records why s stays on the trap path.
func (w *World) setWhy(s *jumpSite, why string) {
	w.jumpMu.Lock()
	s.why = why
	w.jumpMu.Unlock()
}

// indexLocked and unindexLocked keep World.jumpBy, the sites of each
// uprobe, that flush walks. Preconditions: w.jumpMu held.
func (w *World) indexLocked(s *jumpSite) {
	if s.u == nil || s.ctr == nil {
		return
	}
	if w.jumpBy == nil {
		w.jumpBy = map[*probes.Uprobe]map[*jumpSite]bool{}
	}
	if w.jumpBy[s.u] == nil {
		w.jumpBy[s.u] = map[*jumpSite]bool{}
	}
	w.jumpBy[s.u][s] = true
	w.setFlagLocked(s, s.u.Streaming())
}

func (w *World) unindexLocked(s *jumpSite) {
	if s.u == nil {
		return
	}
	w.flushSiteLocked(s)
	w.setFlagLocked(s, false)
	if m := w.jumpBy[s.u]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(w.jumpBy, s.u)
		}
	}
}

// flushJumps is the engine's EngineOptions.Flush: the hits the jump sites of u
// counted go to u's consumers. Any goroutine.
func (w *World) flushJumps(u *probes.Uprobe) {
	w.jumpMu.Lock()
	defer w.jumpMu.Unlock()
	drained := map[*jumpRegion]bool{}
	for s := range w.jumpBy[u] {
		w.flushSiteLocked(s)
		if r := s.reg; r != nil && !drained[r] && s.flag != nil && atomic.LoadUint64(s.flag) != 0 {
			// Its events so far reach its readers before a consumer
			// leaves (the engine flushes first).
			drained[r] = true
			w.drainRegionLocked(r)
		}
	}
}

func (w *World) flushSiteLocked(s *jumpSite) {
	if s.ctr == nil || s.u == nil {
		return
	}
	v := s.count()
	if d := v - s.last; d != 0 {
		s.last = v
		w.nJumpHits.Add(int64(d))
		w.eng.DispatchCount(s.u, s.pid, d)
	}
}

// forgetSite ends the counting of s (its breakpoint was removed): its
// counts so far are flushed. Any goroutine.
func (w *World) forgetSite(s *jumpSite) {
	w.jumpMu.Lock()
	w.unindexLocked(s)
	s.u = nil
	w.jumpMu.Unlock()
}

// dropJumps flushes and forgets every site of p and unmaps the daemon's
// view of its regions (p's address space is gone or being detached).
// Preconditions: on the tracer thread.
func (w *World) dropJumps(p *process) {
	w.jumpMu.Lock()
	for _, r := range p.jump.regions {
		w.drainRegionLocked(r) // the events still in its ring
	}
	for _, s := range p.jump.sites {
		w.unindexLocked(s)
		s.u, s.ctr = nil, nil
	}
	p.jump.sites, p.jump.want = nil, nil
	delete(w.fsTids, p.pid)
	w.jumpMu.Unlock()
	for _, r := range p.jump.regions {
		unix.Munmap(r.local)
		w.jumpMu.Lock()
		delete(w.jumpInos, r.ino)
		w.jumpMu.Unlock()
	}
	p.jump.regions = nil
}

// inTramp returns p's site whose trampoline rip is in, if any.
func (p *process) inTramp(rip uint64) *jumpSite {
	for _, r := range p.jump.regions {
		if rip < r.addr || rip >= r.addr+uint64(r.used*trampStride) {
			continue
		}
		tramp := rip - (rip-r.addr)%trampStride
		for _, s := range p.jump.sites {
			if s.tramp == tramp {
				return s
			}
		}
	}
	return nil
}
