package proc

import (
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Events from jump sites. While someone reads a probe's events
// (probes.Uprobe.Streaming), the flags of its sites are set, and their
// trampolines (install.TrampolineEv) append a record of each hit — the
// time stamp counter, the thread's fs base, the site — to their region's
// ring, shared with the daemon: the process never stops for an event
// either. A drain goroutine runs while any flag is set: it reads every
// region's ring (polling: every 50 µs while records come, backing off to
// 2 ms), turns each record into a hit (the TSC into unix time, calibrated
// against the clock; the fs base into the thread's tid, learned when the
// tracer stops the thread: at the switch to the jump and at a new
// thread's first stop; 0 for a thread it never saw) and gives it to the
// consumers that read events (probes.Engine.DispatchEvent). A reader that
// falls behind the ring by more than jumpRingRecs records, or a record its
// writer never finished within 10 ms (a thread stopped or killed in the
// middle), loses records: counted (World stats, and a "# lost N events"
// line to the probe's readers through Consumer.Lost). Where the kernel
// keeps fs bases from user space (no FSGSBASE) trampolines carry no
// events, and a probe whose events are read goes back to the trap path.

func rdtsc() uint64

// evSupported reports whether a process may read its fs base (rdfsbase:
// the kernel set FSGSBASE, AT_HWCAP2 bit 1).
func evSupported() bool {
	v, ok := procfs.Auxv(os.Getpid(), procfs.AtHwcap2)
	return ok && v&2 != 0
}

// hasRDPID reports whether the CPU has rdpid (the flags of
// /proc/cpuinfo), for per-CPU counters (install.EvMem.PerCPU).
func hasRDPID() bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "flags") {
			return slices.Contains(strings.Fields(line), "rdpid")
		}
	}
	return false
}

// countOnly reports whether u's hits may go through jump sites: it only
// counts, or its readers of events can be served by the trampolines.
func (w *World) countOnly(u *probes.Uprobe) bool {
	return u.CountOnly() && (w.evOK || !u.Streaming())
}

// setFlagLocked sets or clears s's events flag after its uprobe's
// Streaming, and starts the drain when the first one is set.
// Preconditions: w.jumpMu held.
func (w *World) setFlagLocked(s *jumpSite, on bool) {
	if s.flag == nil || s.ev == nil {
		return
	}
	v := uint64(0)
	if on {
		v = 1
	} else if atomic.LoadUint64(s.flag) != 0 && s.reg != nil {
		w.drainRegionLocked(s.reg) // what it appended so far goes to its readers
	}
	switch old := atomic.SwapUint64(s.flag, v); {
	case on && old == 0:
		w.evOn++
		if !w.draining {
			w.draining = true
			go w.drain()
		}
	case !on && old != 0:
		w.evOn--
	}
}

// streamChanged sets the flags of u's sites after u.Streaming. Any
// goroutine (the engine's Changed hook): the flags are in memory.
func (w *World) streamChanged(u *probes.Uprobe) {
	on := u.Streaming()
	w.jumpMu.Lock()
	for s := range w.jumpBy[u] {
		w.setFlagLocked(s, on)
	}
	w.jumpMu.Unlock()
}

// noteFs records th's fs base for the events' tids.
// Preconditions: on the tracer thread; th is stopped.
func (w *World) noteFs(th *thread) {
	if !w.evOK || th.proc == nil {
		return
	}
	var r install.Regs
	if ptraceGetRegs(th.tid, &r) != nil || r.FsBase == 0 {
		return
	}
	pid := th.proc.pid
	w.jumpMu.Lock()
	if w.fsTids == nil {
		w.fsTids = map[int]map[uint64]int{}
	}
	if w.fsTids[pid] == nil {
		w.fsTids[pid] = map[uint64]int{}
	}
	w.fsTids[pid][r.FsBase] = th.tid
	w.jumpMu.Unlock()
}

// The TSC against the clock: unix ns = ns0 + (tsc - tsc0) * rate.
type tscClock struct {
	tsc0 uint64
	ns0  int64
	rate float64 // ns per tick
	at   time.Time
}

// init measures the rate over 5 ms (NewWorld, where events are possible).
func (c *tscClock) init() {
	t0, n0 := rdtsc(), time.Now().UnixNano()
	time.Sleep(5 * time.Millisecond)
	t1, n1 := rdtsc(), time.Now().UnixNano()
	c.rate = float64(n1-n0) / float64(t1-t0)
	c.tsc0, c.ns0, c.at = t1, n1, time.Now()
}

// rebase re-bases the clock once a second (the rate from the two latest
// bases). Preconditions: World.jumpMu held.
func (c *tscClock) rebase() {
	now := time.Now()
	if now.Sub(c.at) < time.Second {
		return
	}
	t, n := rdtsc(), time.Now().UnixNano()
	if t > c.tsc0 {
		c.rate = float64(n-c.ns0) / float64(t-c.tsc0)
	}
	c.tsc0, c.ns0, c.at = t, n, now
}

func (c *tscClock) unixNano(tsc uint64) int64 {
	return c.ns0 + int64(float64(int64(tsc-c.tsc0))*c.rate)
}

// drain reads the rings while any events flag is set (see the top of this
// file).
func (w *World) drain() {
	sleep := 50 * time.Microsecond
	for {
		w.jumpMu.Lock()
		w.tsc.rebase()
		if w.evOn == 0 || w.closed.Load() {
			w.draining = false
			w.jumpMu.Unlock()
			return
		}
		n := 0
		seen := map[*jumpRegion]bool{}
		for _, m := range w.jumpBy {
			for s := range m {
				if r := s.reg; r != nil && !seen[r] && s.flag != nil && atomic.LoadUint64(s.flag) != 0 {
					seen[r] = true
					n += w.drainRegionLocked(r)
				}
			}
		}
		w.jumpMu.Unlock()
		if n > 0 {
			sleep = 50 * time.Microsecond
		} else {
			sleep = min(2*sleep, 2*time.Millisecond)
		}
		time.Sleep(sleep)
	}
}

// stuckLimit is how long a claimed record may stay unpublished before the
// drain counts it lost.
const stuckLimit = 10 * time.Millisecond

// drainRegionLocked dispatches the records of r's ring not read yet and
// returns how many. Preconditions: w.jumpMu held (r.local stays mapped).
func (w *World) drainRegionLocked(r *jumpRegion) int {
	head := atomic.LoadUint64((*uint64)(unsafe.Pointer(&r.local[jumpHeadOff])))
	if head-r.tail > jumpRingRecs {
		w.lostLocked(r, head-r.tail-jumpRingRecs)
		r.tail = head - jumpRingRecs
	}
	n := 0
	for r.tail < head {
		idx := r.tail
		rec := r.local[jumpRingOff+int(idx%jumpRingRecs)*install.EvRecSize:]
		word := func(i int) *uint64 { return (*uint64)(unsafe.Pointer(&rec[i*8])) }
		seq := atomic.LoadUint64(word(0))
		if seq != idx+1 {
			if seq > idx+1 { // overwritten by a later lap
				w.lostLocked(r, 1)
				r.tail++
				continue
			}
			// Claimed, not yet published.
			if r.stuckAt != idx || r.stuckSince.IsZero() {
				r.stuckAt, r.stuckSince = idx, time.Now()
				break
			}
			if time.Since(r.stuckSince) < stuckLimit {
				break
			}
			w.lostLocked(r, 1)
			r.tail++
			continue
		}
		tsc, fs, id := atomic.LoadUint64(word(1)), atomic.LoadUint64(word(2)), atomic.LoadUint64(word(3))
		if atomic.LoadUint64(word(0)) != idx+1 {
			w.lostLocked(r, 1) // overwritten while read
			r.tail++
			continue
		}
		r.tail++
		s := r.sites[uint32(id)]
		if s == nil || s.u == nil {
			continue
		}
		h := probes.Hit{Pid: s.pid, Tid: w.fsTids[r.pid][fs], Vaddr: s.vaddr, Time: w.tsc.unixNano(tsc)}
		w.eng.DispatchEvent(s.u, h)
		n++
	}
	return n
}

// lostLocked counts n records of r lost, for every uprobe whose events
// r's sites carry now. Preconditions: w.jumpMu held.
func (w *World) lostLocked(r *jumpRegion, n uint64) {
	w.nEvLost.Add(int64(n))
	done := map[*probes.Uprobe]bool{}
	for _, s := range r.sites {
		if u := s.u; u != nil && !done[u] && s.flag != nil && atomic.LoadUint64(s.flag) != 0 {
			done[u] = true
			w.eng.DispatchLost(u, n)
		}
	}
}
