package proc

import (
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// selfFds counts the open file descriptors of the test process.
func selfFds(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// selfRSS returns VmRSS of the test process in KiB.
func selfRSS(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kb
		}
	}
	return 0
}

// manyProcesses runs count short-lived processes of a probed program
// (spawned by an unprobed one, PAR at a time) and checks every hit and the
// daemon's resources afterwards.
func manyProcesses(t *testing.T, count int) {
	bin, other, e, p := probedTree(t)
	const n = 3
	// A warm-up run, so that "before" includes what the first run
	// allocates once (caches, the relay's build).
	if out, code := run(t, 30*time.Second, other, "spawn", "10", "4", bin, strconv.Itoa(n)); code != 0 {
		t.Fatalf("warm-up: exit %d %q", code, out)
	}
	h0 := p.c.Hits()
	runtime.GC()
	fds0, gr0, rss0 := selfFds(t), runtime.NumGoroutine(), selfRSS(t)
	start := time.Now()
	out, code := run(t, 10*time.Minute, other, "spawn", strconv.Itoa(count), "4", bin, strconv.Itoa(n))
	el := time.Since(start)
	if code != 0 || out != fmt.Sprintf("spawn %d bad 0 first 0\n", count) {
		t.Errorf("exit %d output %q", code, out)
	}
	if got, want := p.c.Hits()-h0, uint64(count*n); got != want {
		t.Errorf("%d hits, want %d", got, want)
	}
	s := settle(t, e.w)
	if s.Errors != 0 {
		t.Errorf("stats: %+v", s)
	}
	// Goroutines of the fanotify handlers and timers end shortly.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > gr0+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	fds1, gr1, rss1 := selfFds(t), runtime.NumGoroutine(), selfRSS(t)
	t.Logf("%d processes in %v (%v each); fds %d -> %d, goroutines %d -> %d, RSS %d -> %d KiB",
		count, el, el/time.Duration(count), fds0, fds1, gr0, gr1, rss0, rss1)
	// Bounds: no fd and no goroutine left behind (+2 for the runtime's
	// and the test's own); RSS within 64 MiB (the race detector's
	// shadow memory grows with allocations and is not given back).
	if fds1 > fds0+2 {
		t.Errorf("fds %d -> %d", fds0, fds1)
	}
	if gr1 > gr0+2 {
		t.Errorf("goroutines %d -> %d", gr0, gr1)
	}
	if rss1 > rss0+64*1024 {
		t.Errorf("RSS %d -> %d KiB", rss0, rss1)
	}
	if left := procsOf(bin, other); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
}

// TestManyNewProcesses: 1,000 short-lived processes of a probed program.
func TestManyNewProcesses(t *testing.T) { manyProcesses(t, 1000) }

// TestManyNewProcesses10k: 10,000 of them (UPROBEFS_LONG=1, not -short).
func TestManyNewProcesses10k(t *testing.T) {
	if testing.Short() || os.Getenv("UPROBEFS_LONG") == "" {
		t.Skip("set UPROBEFS_LONG=1 (and no -short) for 10,000 processes")
	}
	manyProcesses(t, 10000)
}

// TestRescanFallback: without fanotify, a process started after
// registration is found by the /proc rescan.
func TestRescanFallback(t *testing.T) {
	bin := workBin(t)
	e := newEnv(t, Options{NoFanotify: true, RescanInterval: 20 * time.Millisecond})
	p := e.register(bin, "f_load")
	f := startFixture(t, bin, "500", "1", "l")
	deadline := time.Now().Add(10 * time.Second)
	for e.w.Stats().Processes == 0 {
		if time.Now().After(deadline) {
			t.Fatal("not attached by the rescan")
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.Go()
	if out, code := f.Wait(30 * time.Second); code != 0 || !strings.HasPrefix(out, "sum ") {
		t.Errorf("exit %d output %q", code, out)
	}
	if got := p.c.Hits(); got != 500 {
		t.Errorf("%d hits, want 500", got)
	}
}

// stressProbe is a probe site the stress test registers and unregisters.
type stressProbe struct {
	path string
	in   *rmap.Inode
	off  uint64
	plan *install.Plan
}

func newStressProbe(t *testing.T, e *env, path, loc string) *stressProbe {
	off, plan := resolvePlan(t, path, loc)
	return &stressProbe{path: path, in: e.inodes.Get(keyOf(t, path)), off: off, plan: plan}
}

// TestStressNewProcesses: Watch/Register and Unregister/Unwatch of a
// program and a library in a loop while that program forks, execs itself,
// vforks, posix_spawns, dlopens and dlcloses the library, and exits. Every
// process ends with status 0 (no SIGTRAP from a stray breakpoint), no exec
// stays blocked (deadlines), and at the end no stray 0xCC is left in the
// processes still running (their text equals the files) and none is traced.
// It runs with both write modes: /proc/PID/mem, and PTRACE_POKEDATA (the
// fallback, whose requests are served by the tracer while a walk holds an
// mmap_sem: a deadlock when the tracer handled the stops it reaped meanwhile
// at once).
func TestStressNewProcesses(t *testing.T) {
	for _, mode := range []struct {
		name string
		poke bool
	}{{"procmem", false}, {"pokedata", true}} {
		t.Run(mode.name, func(t *testing.T) { stressNewProcesses(t, Options{ForcePokeData: mode.poke}) })
	}
}

func stressNewProcesses(t *testing.T, o Options) {
	bin, _ := treeBins(t)
	liba, _ := libs(t)
	e := newFanEnv(t, o)
	sps := []*stressProbe{newStressProbe(t, e, bin, "probed"), newStressProbe(t, e, liba, "lib_f")}
	var hits atomic.Uint64
	stop := make(chan struct{})
	cyclesDone := make(chan int, 1)
	go func() {
		rng := rand.New(rand.NewSource(1))
		cycles := 0
		defer func() { cyclesDone <- cycles }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var cs []*probes.Consumer
			for _, sp := range sps {
				if err := e.w.Watch(sp.in, sp.path); err != nil {
					t.Errorf("watch: %v", err)
					return
				}
				c := &probes.Consumer{Name: "stress"}
				if err := e.eng.Register(sp.in, sp.off, sp.plan.Insn, sp.plan, c); err != nil {
					t.Errorf("register: %v", err)
					return
				}
				cs = append(cs, c)
			}
			time.Sleep(time.Duration(rng.Intn(15)) * time.Millisecond)
			for i, sp := range sps {
				if err := e.eng.Unregister(sp.in, sp.off, cs[i]); err != nil {
					t.Errorf("unregister: %v", err)
				}
			}
			for i := len(sps) - 1; i >= 0; i-- {
				e.w.Unwatch(sps[i].in)
			}
			for _, c := range cs {
				hits.Add(c.Hits())
			}
			cycles++
			time.Sleep(time.Duration(rng.Intn(5)) * time.Millisecond)
		}
	}()
	var stopOnce sync.Once
	cycles := -1
	stopCycles := func() int {
		stopOnce.Do(func() {
			close(stop)
			select {
			case cycles = <-cyclesDone:
			case <-time.After(60 * time.Second):
				t.Error("register/unregister loop stuck")
			}
		})
		return cycles
	}
	t.Cleanup(func() { stopCycles() })

	const iter = 240
	f := startFixture(t, bin, "churn", strconv.Itoa(iter), liba, "20")
	start := time.Now()
	hl, err := f.readLine(120 * time.Second)
	if err != nil {
		out, code := f.Wait(10 * time.Second)
		t.Fatalf("churn: %v (blocked exec?): exit %d, output %q", err, code, out)
	}
	cl, err := f.readLine(10 * time.Second)
	if err != nil {
		t.Fatalf("churn: %v", err)
	}
	el := time.Since(start)
	stopCycles()
	if cl != fmt.Sprintf("churn %d bad 0 first 0\n", iter) {
		t.Errorf("churn: %q", cl)
	}
	var holders []int
	for _, fld := range strings.Fields(strings.TrimPrefix(hl, "holders ")) {
		pid, err := strconv.Atoi(fld)
		if err != nil {
			t.Fatalf("holders line %q", hl)
		}
		holders = append(holders, pid)
	}
	// Everything is unregistered and unwatched: nothing may be traced
	// and every text must equal its file.
	settle(t, e.w)
	for _, pid := range append([]int{f.Pid}, holders...) {
		if tp := tracerPid(t, pid); tp != 0 {
			t.Errorf("pid %d: TracerPid %d", pid, tp)
		}
		textEqualsFile(t, pid, bin)
	}
	for _, pid := range holders {
		textEqualsFile(t, pid, liba)
	}
	f.Go()
	if out, code := f.Wait(30 * time.Second); code != 0 || out != "holders bad 0 first 0\n" {
		t.Errorf("exit %d output %q", code, out)
	}
	if left := procsOf(bin); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
	s := e.w.Stats()
	t.Logf("%d jobs in %v with %d register/unregister cycles, %d hits; stats %+v", iter, el, cycles, hits.Load(), s)
}
