package proc

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
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
	"github.com/uprobefs/uprobefs/internal/kuprobe"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// Issue 5: processes that start, fork, exec, dlopen and exit after
// registration. Fixture: testdata/tree.c (modes leaf, tree, spawn, dl,
// churn), testdata/lib.c (liba, libb).

// treeBins returns a private copy of the tree program (to probe) and a
// second copy (another inode, never probed).
func treeBins(t *testing.T) (bin, other string) {
	b := buildOnce(t, "tree", "-O2")
	return testfix.Copy(t, b), testfix.Copy(t, b)
}

// libs returns private copies of liba and libb.
func libs(t *testing.T) (a, b string) {
	la := buildOnce(t, "lib", "-O2", "-shared", "-fPIC")
	lb := buildOnce(t, "lib", "-O2", "-shared", "-fPIC", "-DLIBB")
	a = filepath.Join(t.TempDir(), "liba.so")
	b = filepath.Join(t.TempDir(), "libb.so")
	for _, c := range [][2]string{{la, a}, {lb, b}} {
		data, err := os.ReadFile(c[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c[1], data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

// run runs bin args... to its end under the relay (not a child of ours).
func run(t *testing.T, d time.Duration, bin string, args ...string) (string, int) {
	t.Helper()
	f := startFixture(t, bin, args...)
	return f.Wait(d)
}

// settle waits (with a deadline) until the world traces nothing.
func settle(t *testing.T, w *World) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := w.Stats()
		if s.Processes == 0 && s.Threads == 0 {
			return s
		}
		if time.Now().After(deadline) {
			t.Errorf("still tracing: %+v", s)
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// procsOf returns the pids of live processes whose program is one of bins.
func procsOf(bins ...string) []int {
	pids, _ := listPids()
	var out []int
	for _, pid := range pids {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		for _, b := range bins {
			if exe == b {
				out = append(out, pid)
			}
		}
	}
	return out
}

// TestNewProcessExact: a short-lived process started after registration
// (held at its exec by fanotify, attached, then let go) calls the probed
// function N times at the very start of main: exactly N hits, 100 runs in
// a row.
func TestNewProcessExact(t *testing.T) {
	bin, _ := treeBins(t)
	e := newEnv(t, Options{})
	if e.w.fan == nil {
		t.Skipf("fanotify unavailable: %v", e.w.fanErr)
	}
	p := e.register(bin, "probed")
	const n, runs = 5, 100
	start := time.Now()
	for i := 0; i < runs; i++ {
		before := p.c.Hits()
		out, code := run(t, 10*time.Second, bin, "leaf", strconv.Itoa(n))
		if code != 0 || out != "" {
			t.Fatalf("run %d: exit %d output %q", i, code, out)
		}
		if got := p.c.Hits() - before; got != n {
			t.Fatalf("run %d: %d hits, want %d", i, got, n)
		}
	}
	t.Logf("%d runs in %v (%v per run, relay included)", runs, time.Since(start), time.Since(start)/runs)
	if s := settle(t, e.w); s.Errors != 0 {
		t.Errorf("stats: %+v", s)
	}
}

// TestDlopen: a process dlopens a probed library, calls it N times,
// dlcloses it, dlopens another library (at the same address) and calls it:
// exactly N hits, the second library's text equals its file, the output is
// that of an unprobed run. Either the program is probed too (traced from
// its exec on) or only the library is (held at the library's open).
func TestDlopen(t *testing.T) {
	bin, other := treeBins(t)
	liba, libb := libs(t)
	const n = 1000
	ns := strconv.Itoa(n)
	for _, tc := range []struct {
		name    string
		progToo bool
	}{{"prog+lib", true}, {"lib", false}} {
		t.Run(tc.name, func(t *testing.T) {
			prog := other
			if tc.progToo {
				prog = bin
			}
			wf := startFixture(t, prog, "dl", liba, libb, ns)
			want, err := wf.readLine(10 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			wf.Go()
			if _, code := wf.Wait(10 * time.Second); code != 0 {
				t.Fatalf("unprobed: exit %d", code)
			}
			e := newEnv(t, Options{})
			if e.w.fan == nil {
				t.Skipf("fanotify unavailable: %v", e.w.fanErr)
			}
			var pp *probe
			if tc.progToo {
				pp = e.register(bin, "probed")
			}
			pl := e.register(liba, "lib_f")
			f := startFixture(t, prog, "dl", liba, libb, ns)
			got, err := f.readLine(30 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("output %q, want %q", got, want)
			}
			if !strings.HasPrefix(got, "dl 1 ") {
				t.Logf("libb not at liba's address (%q)", got)
			}
			if h := pl.c.Hits(); h != n {
				t.Errorf("lib_f: %d hits, want %d", h, n)
			}
			if pp != nil {
				if h := pp.c.Hits(); h != 1 {
					t.Errorf("probed: %d hits, want 1", h)
				}
			}
			textEqualsFile(t, f.Pid, libb)
			if tc.progToo {
				// Still traced (the program is probed), liba's
				// VMAs gone from its MM.
				e.w.t.do(func() {
					p := e.w.procs[f.Pid]
					if p == nil {
						t.Errorf("pid %d not traced", f.Pid)
						return
					}
					p.mm.MmapSem.RLock()
					for _, v := range p.mm.VMAsLocked() {
						if v.Inode == pl.in {
							t.Errorf("liba VMA %#x-%#x still in the MM", v.Start, v.End)
						}
					}
					p.mm.MmapSem.RUnlock()
				})
			} else if tp := tracerPid(t, f.Pid); tp != 0 {
				// Nothing probed left in it: detached.
				t.Errorf("TracerPid %d after dlclose", tp)
			}
			f.Go()
			if out, code := f.Wait(10 * time.Second); code != 0 || out != "" {
				t.Errorf("exit %d output %q", code, out)
			}
			if s := settle(t, e.w); s.Errors != 0 {
				t.Errorf("stats: %+v", s)
			}
		})
	}
}

// TestForkTree: a process started after registration makes 50 children by
// fork, fork+exec of itself, fork+exec of another program, vfork+exec and
// posix_spawn; each calls the probed function N times (twice N for
// fork+exec of itself): the total is exact, every process ends well, none
// is left (no zombie, nothing stuck) and nothing stays traced.
func TestForkTree(t *testing.T) {
	bin, other := treeBins(t)
	e := newEnv(t, Options{})
	if e.w.fan == nil {
		t.Skipf("fanotify unavailable: %v", e.w.fanErr)
	}
	p := e.register(bin, "probed")
	const n, k = 20, 50
	start := time.Now()
	out, code := run(t, 60*time.Second, bin, "tree", strconv.Itoa(n), strconv.Itoa(k), other)
	el := time.Since(start)
	if code != 0 || out != fmt.Sprintf("tree %d bad 0 first 0\n", k) {
		t.Errorf("exit %d output %q", code, out)
	}
	// Per 5 children: fork N, fork+exec self 2N, fork+exec other N (the
	// other program is not probed), vfork+exec N, posix_spawn N.
	want := uint64(n + k/5*6*n)
	if got := p.c.Hits(); got != want {
		t.Errorf("%d hits, want %d", got, want)
	}
	if s := settle(t, e.w); s.Errors != 0 {
		t.Errorf("stats: %+v", s)
	}
	if left := procsOf(bin, other); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
	t.Logf("tree of %d children in %v", k, el)
}

// TestBashVsKernel: a private copy of bash runs a fixed script with a probe
// on one of its functions: our count equals the kernel's uprobe count for
// the same copy, offset and script (kernel first, then ours, never both).
func TestBashVsKernel(t *testing.T) {
	if err := kuprobe.Available(); err != nil {
		t.Skipf("kernel uprobes: %v", err)
	}
	bash := testfix.Copy(t, "/bin/bash")
	const fn = "find_function"
	f, err := install.Open(bash)
	if err != nil {
		t.Fatal(err)
	}
	off, err := f.Resolve(fn)
	f.Close()
	if err != nil {
		t.Skipf("bash without %s: %v", fn, err)
	}
	script := `f() { x=$((x+1)); }; for ((i=0;i<300;i++)); do f; if ((i%7==0)); then g=$(f; echo $x); fi; done; echo $x`
	args := []string{"--norc", "--noprofile", "-c", script}

	kp, err := kuprobe.Add(fmt.Sprintf("uprobefs_bash_%d", os.Getpid()), bash, off)
	if err != nil {
		t.Skipf("kernel uprobe: %v", err)
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			kp.Remove()
		}
	})
	if err := kp.Enable(); err != nil {
		t.Fatal(err)
	}
	kout, kcode := run(t, 30*time.Second, bash, args...)
	kh, err := kp.Hits()
	if err != nil {
		t.Fatal(err)
	}
	if err := kp.Remove(); err != nil {
		t.Fatal(err)
	}
	removed = true
	if kcode != 0 || kh == 0 {
		t.Fatalf("kernel run: exit %d output %q, %d hits", kcode, kout, kh)
	}

	e := newEnv(t, Options{})
	if e.w.fan == nil {
		t.Skipf("fanotify unavailable: %v", e.w.fanErr)
	}
	p := e.register(bash, fn)
	out, code := run(t, 30*time.Second, bash, args...)
	if code != 0 || out != kout {
		t.Errorf("exit %d output %q, want 0 %q", code, out, kout)
	}
	if got := p.c.Hits(); got != kh {
		t.Errorf("%s: %d hits, kernel %d", fn, got, kh)
	}
	t.Logf("%s: kernel %d hits, ours %d", fn, kh, p.c.Hits())
	if s := settle(t, e.w); s.Errors != 0 {
		t.Errorf("stats: %+v", s)
	}
}

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
	bin, other := treeBins(t)
	e := newEnv(t, Options{})
	if e.w.fan == nil {
		t.Skipf("fanotify unavailable: %v", e.w.fanErr)
	}
	p := e.register(bin, "probed")
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
func TestStressNewProcesses(t *testing.T) {
	bin, _ := treeBins(t)
	liba, _ := libs(t)
	e := newEnv(t, Options{})
	if e.w.fan == nil {
		t.Skipf("fanotify unavailable: %v", e.w.fanErr)
	}
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
		t.Fatalf("churn: %v (blocked exec?)", err)
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
