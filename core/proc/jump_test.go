package proc

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// siteModes returns the SiteMode of every site of p.
func (e *env) siteModes(p *probe) []string {
	var modes []string
	e.eng.Sites(p.in, p.off, func(s probes.Site) bool {
		if s.Installed {
			modes = append(modes, e.w.SiteMode(s.MM, s.Vaddr))
		}
		return true
	})
	return modes
}

// awaitJumps waits (10 s at most) until every probe of ps has n installed
// sites, all jump sites.
func (e *env) awaitJumps(ps []*probe, n int) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var bad []string
		for _, p := range ps {
			modes := e.siteModes(p)
			if len(modes) != n {
				bad = append(bad, fmt.Sprintf("%s: %d sites", p.c.Name, len(modes)))
			}
			for _, m := range modes {
				if m != "jump" {
					bad = append(bad, p.c.Name+": "+m)
				}
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("not all jump sites after 10s: %v", bad)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestJumpSites: probes on instructions of every kind become jump sites in
// a process of 4 threads before it runs its work: the hits are counted
// exactly without a single trap, the checksum is unchanged, and after the
// probes are removed the text equals the file again.
func TestJumpSites(t *testing.T) {
	bin := workBin(t)
	const n, threads = 20000, 4
	funcs := "eplscjki"
	locs := []string{"f_endbr", "f_push", "f_load", "f_store", "f_call", "f_jmp", "f_imul"}
	want := checksum(t, bin, fmt.Sprint(n), fmt.Sprint(threads), funcs)
	e := newEnv(t, Options{})
	f := startFixture(t, bin, fmt.Sprint(n), fmt.Sprint(threads), funcs, "hold")
	var ps []*probe
	for _, loc := range locs {
		p := e.register(bin, loc)
		if p.plan.Jump == nil {
			t.Logf("%s: no jump plan: %s", loc, p.plan.NoJump)
			e.unregister(p)
			continue
		}
		ps = append(ps, p)
	}
	e.awaitJumps(ps, 1)
	traps := e.w.nHits.Load()
	lines := holdAll(t, []*fixture{f})
	if lines[0] != want {
		t.Errorf("output %q, want %q", lines[0], want)
	}
	for _, p := range ps {
		if got := p.c.Hits(); got != n*threads {
			t.Errorf("%s: %d hits, want %d", p.c.Name, got, n*threads)
		}
	}
	if d := e.w.nHits.Load() - traps; d != 0 {
		t.Errorf("%d traps during the work, want none", d)
	}
	for _, p := range ps {
		e.unregister(p)
	}
	textEqualsFile(t, f.Pid, bin)
	release(t, []*fixture{f})
}

// TestJumpToggle: 8 threads hit a probe at full speed while it is
// registered and removed 1,000 times, each time switched to a jump site
// (when the switch makes it before the removal): no process is harmed,
// every checksum is the unprobed one. Fixtures are restarted as they end.
func TestJumpToggle(t *testing.T) {
	bin := workBin(t)
	const n, threads, cycles = 3000000, 8, 1000
	args := []string{fmt.Sprint(n), fmt.Sprint(threads), "pl"}
	want := checksum(t, bin, args...)
	e := newEnv(t, Options{})
	start := func() (*fixture, chan string) {
		f := startFixture(t, bin, args...)
		f.Go()
		done := make(chan string, 1)
		go func() {
			out, code := f.Wait(5 * time.Minute)
			done <- fmt.Sprintf("%s exit %d", out, code)
		}()
		return f, done
	}
	_, done := start()
	runs, jumps := 0, 0
	for c := 0; c < cycles; c++ {
		select {
		case got := <-done:
			runs++
			if got != want+" exit 0" {
				t.Fatalf("run %d: %q, want %q", runs, got, want+" exit 0")
			}
			_, done = start()
		default:
		}
		p := e.register(bin, "f_push")
		for deadline := time.Now().Add(5 * time.Millisecond); time.Now().Before(deadline); {
			if m := e.siteModes(p); len(m) == 1 && m[0] == "jump" {
				jumps++
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		e.unregister(p)
	}
	got := <-done
	runs++
	if got != want+" exit 0" {
		t.Fatalf("run %d: %q, want %q", runs, got, want+" exit 0")
	}
	t.Logf("%d cycles, %d switched to a jump site, %d runs", cycles, jumps, runs)
	if jumps == 0 {
		t.Error("no cycle switched to a jump site")
	}
	if s := settle(t, e.w); s.Errors != 0 {
		t.Errorf("stats: %+v", s)
	}
}

// TestJumpFork: a process of 4 threads whose probes are jump sites forks a
// child that runs the work too: the child gets its own sites (it inherited
// the jmps, which would count for the parent), every hit counts once, both
// end well.
func TestJumpFork(t *testing.T) {
	bin := workBin(t)
	const n, threads = 50000, 4
	args := []string{fmt.Sprint(n), fmt.Sprint(threads), "pl", "fork"}
	want := checksum(t, bin, args...)
	e := newEnv(t, Options{})
	f := startFixture(t, bin, args...)
	ps := []*probe{e.register(bin, "f_push"), e.register(bin, "f_load")}
	e.awaitJumps(ps, 1)
	traps := e.w.nHits.Load()
	runAllWant(t, []*fixture{f}, 60*time.Second, want)
	for _, p := range ps {
		if got := p.c.Hits(); got != n*(threads+1) {
			t.Errorf("%s: %d hits, want %d", p.c.Name, got, n*(threads+1))
		}
	}
	// The parent's hits never trapped; the child's switched after a few.
	if d := e.w.nHits.Load() - traps; d >= 2*n {
		t.Errorf("%d traps, want fewer than the child's %d calls", d, 2*n)
	}
}

// TestJumpSignals: SIGALRM every 50 µs while probes that are jump sites
// are hit in a loop: a handler that runs while its thread is in a
// trampoline sees the program's context (it counts contexts outside the
// program's text: 0), the hits are exact, the program ends well.
func TestJumpSignals(t *testing.T) {
	bin := faultBin(t)
	const n = 10000 // each signal is a ptrace stop: a 50 µs timer keeps the tracer busy
	want := checksum(t, bin, "async", fmt.Sprint(n))
	if !strings.HasSuffix(want, " outside 0\n") {
		t.Fatalf("unprobed: %q", want)
	}
	for _, events := range []bool{false, true} {
		t.Run(fmt.Sprintf("events=%v", events), func(t *testing.T) {
			e := newEnv(t, Options{})
			f := startFixture(t, bin, "async", fmt.Sprint(n))
			p := e.register(bin, "f_slot")
			var seen atomic.Int64
			if events {
				// A second consumer reads events: the trampolines run
				// their event code, where signals arrive too.
				c := &probes.Consumer{Name: "events", Busy: func() bool { return true },
					Handler: func(*probes.Uprobe, probes.Hit) { seen.Add(1) }}
				if err := e.eng.Register(p.in, p.off, p.plan.Insn, p.plan, c); err != nil {
					t.Fatal(err)
				}
			}
			e.awaitJumps([]*probe{p}, 1)
			runAllWant(t, []*fixture{f}, 60*time.Second, want)
			if got := p.c.Hits(); got != n {
				t.Errorf("%d hits, want %d", got, n)
			}
			if events && seen.Load() == 0 {
				t.Error("no event")
			}
		})
	}
}

// TestJumpRegionReused: register/unregister cycles with a probe that
// becomes a jump site in a long-running process, each ending with a
// detach: the process keeps one jump region, adopted by every later
// attachment with its trampoline reused (one region per cycle before).
func TestJumpRegionReused(t *testing.T) {
	bin := workBin(t)
	e := newEnv(t, Options{})
	f := startFixture(t, bin, "10000000000000", "1", "l") // runs until killed (cleanup)
	f.Go()
	for range 30 {
		p := e.register(bin, "f_load")
		e.awaitJumps([]*probe{p}, 1)
		e.unregister(p)
		e.unwatch(bin)
	}
	regions := sumMaps(t, f.Pid, func(m procfs.Mapping) int {
		if strings.HasPrefix(m.Path, "/memfd:uprobefs-jump") && m.Perms == "r-xs" {
			return 1
		}
		return 0
	})
	if regions != 1 {
		t.Fatalf("%d jump regions after 30 attach cycles, want 1", regions)
	}
	textEqualsFile(t, f.Pid, bin)
}

// TestJumpEvents: a consumer that wants a handler call per hit while it
// is Busy (a reader of events) is served by the jump sites themselves:
// they stay jump sites, their trampolines append records that the drain
// dispatches with the right pid, tid (a thread of the process) and a time
// inside the run, and every hit is either an event or counted lost.
func TestJumpEvents(t *testing.T) {
	if !evSupported() {
		t.Skip("no FSGSBASE: events take the trap path (TestExactCounts covers it)")
	}
	bin := workBin(t)
	const n, threads = 20000, 4
	args := []string{fmt.Sprint(n), fmt.Sprint(threads), "p", "hold"}
	e := newEnv(t, Options{})
	f := startFixture(t, bin, args...)
	var busy atomic.Bool
	var mu sync.Mutex
	events, lost := 0, uint64(0)
	tids := map[int]bool{}
	var minT, maxT int64
	c := &probes.Consumer{Name: "events", Busy: busy.Load,
		Handler: func(_ *probes.Uprobe, h probes.Hit) {
			mu.Lock()
			events++
			tids[h.Tid] = true
			if minT == 0 || h.Time < minT {
				minT = h.Time
			}
			maxT = max(maxT, h.Time)
			if h.Pid != f.Pid || h.Vaddr == 0 {
				t.Errorf("event %+v, want pid %d", h, f.Pid)
			}
			mu.Unlock()
		},
		Lost: func(k uint64) { mu.Lock(); lost += k; mu.Unlock() },
	}
	off, plan := resolvePlan(t, bin, "f_push")
	in := e.watch(bin)
	if err := e.eng.Register(in, off, plan.Insn, plan, c); err != nil {
		t.Fatal(err)
	}
	p := &probe{c: c, in: in, off: off, plan: plan}
	e.awaitJumps([]*probe{p}, 1)
	busy.Store(true)
	e.eng.Changed(e.eng.UprobeAt(in, off))
	if m := e.siteModes(p); len(m) != 1 || m[0] != "jump" {
		t.Fatalf("modes with a reader: %v, want jump", m)
	}
	traps := e.w.nHits.Load()
	t0 := time.Now().UnixNano()
	holdAll(t, []*fixture{f})
	t1 := time.Now().UnixNano()
	if got := c.Hits(); got != n*threads {
		t.Errorf("%d hits, want %d", got, n*threads)
	}
	if d := e.w.nHits.Load() - traps; d != 0 {
		t.Errorf("%d traps, want none", d)
	}
	// The drain reads the ring on its own time: wait for it (or the
	// losses it counts) to account for every hit.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		done := uint64(events)+lost == n*threads
		mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d events, %d lost, %d threads seen", events, lost, len(tids))
	if uint64(events)+lost != n*threads {
		t.Errorf("%d events + %d lost, want %d", events, lost, n*threads)
	}
	if events == 0 {
		t.Error("no event")
	}
	for tid := range tids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", f.Pid, tid)); tid == 0 || (err != nil && !os.IsNotExist(err)) {
			t.Errorf("event tid %d", tid)
		}
	}
	if minT < t0-int64(100*time.Millisecond) || maxT > t1+int64(100*time.Millisecond) {
		t.Errorf("event times %d..%d outside the run %d..%d", minT, maxT, t0, t1)
	}
	release(t, []*fixture{f})
}
