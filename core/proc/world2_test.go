package proc

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// runAll lets every fixture go and waits for all of them.
func runAll(t *testing.T, fs []*fixture, d time.Duration) ([]string, []int) {
	t.Helper()
	for _, f := range fs {
		f.Go()
	}
	outs := make([]string, len(fs))
	codes := make([]int, len(fs))
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], codes[i] = f.Wait(d)
		}()
	}
	wg.Wait()
	return outs, codes
}

// runAllWant is runAll for fixtures that must all exit 0 with the output
// want.
func runAllWant(t *testing.T, fs []*fixture, d time.Duration, want string) {
	t.Helper()
	outs, codes := runAll(t, fs, d)
	for i := range outs {
		if codes[i] != 0 || outs[i] != want {
			t.Errorf("fixture %d (pid %d): exit %d output %q, want 0 %q", i, fs[i].Pid, codes[i], outs[i], want)
		}
	}
}

// TestThreads: 8 threads each call the probed function N times.
func TestThreads(t *testing.T) {
	t.Parallel() // with TestExactCounts
	bin := workBin(t)
	n := fmt.Sprint(nHits)
	want := checksum(t, bin, n, "8", "l")
	e := newEnv(t, Options{})
	f := startFixture(t, bin, n, "8", "l")
	p := e.register(bin, "f_load")
	start := time.Now()
	runAllWant(t, []*fixture{f}, 120*time.Second, want)
	el := time.Since(start)
	if got := p.c.Hits(); got != 8*nhits64 {
		t.Errorf("%d hits, want %d", got, 8*nHits)
	}
	t.Logf("8 threads x %d hits in %v (%.1f µs/hit)", nHits, el, float64(el.Microseconds())/float64(8*nHits))
}

// sendUntilExit sends SIGUSR1 to pid every 2ms until stop is closed.
func sendUntilExit(pid int, stop <-chan struct{}) {
	tk := time.NewTicker(2 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
			syscall.Kill(pid, syscall.SIGUSR1)
		}
	}
}

// runUsr1 runs a usr1-mode fixture to its end while sending SIGUSR1; mid
// calls mid (if not nil) once the fixture runs.
func runUsr1(t *testing.T, f *fixture, mid func()) (string, int) {
	if l, err := f.readLine(10 * time.Second); err != nil || l != "ready\n" {
		t.Fatalf("fixture %d: %q %v", f.Pid, l, err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { sendUntilExit(f.Pid, stop); close(done) }()
	f.Go()
	if mid != nil {
		mid()
	}
	out, code := f.Wait(120 * time.Second)
	close(stop)
	<-done
	return out, code
}

// TestSignals: SIGUSR1 handled repeatedly while hitting, SIGSTOP keeps the
// process stopped (no hit while stopped) until SIGCONT; output and status
// unchanged.
func TestSignals(t *testing.T) {
	bin := workBin(t)
	const n = 30000
	ns := fmt.Sprint(n)
	wantOut, wantCode := runUsr1(t, startFixture(t, bin, ns, "2", "pl", "usr1"), nil)
	if wantCode != 0 || !strings.Contains(wantOut, "usr1 ok") {
		t.Fatalf("unprobed: %d %q", wantCode, wantOut)
	}
	e := newEnv(t, Options{})
	f := startFixture(t, bin, ns, "2", "pl", "usr1")
	pp := e.register(bin, "f_push")
	pl := e.register(bin, "f_load")
	out, code := runUsr1(t, f, func() {
		deadline := time.Now().Add(30 * time.Second)
		for pl.c.Hits() < n/4 {
			if time.Now().After(deadline) {
				t.Errorf("no progress: %d hits", pl.c.Hits())
				return
			}
			time.Sleep(time.Millisecond)
		}
		syscall.Kill(f.Pid, syscall.SIGSTOP)
		// Wait until every thread is in its group-stop, then check that
		// nothing runs for a while.
		for !e.w.allListening(f.Pid) {
			if time.Now().After(deadline) {
				t.Errorf("SIGSTOP: threads not all in group-stop")
				break
			}
			time.Sleep(time.Millisecond)
		}
		h0 := pl.c.Hits()
		time.Sleep(200 * time.Millisecond) // observation window
		if h1 := pl.c.Hits(); h1 != h0 {
			t.Errorf("hits went on while stopped: %d -> %d", h0, h1)
		}
		if st, err := procfs.PidStatus(f.Pid); err != nil || (st.State != 't' && st.State != 'T') {
			t.Errorf("state while stopped: %c %v", st.State, err)
		}
		syscall.Kill(f.Pid, syscall.SIGCONT)
	})
	if code != wantCode || out != wantOut {
		t.Errorf("exit %d output %q, want %d %q", code, out, wantCode, wantOut)
	}
	for _, p := range []*probe{pp, pl} {
		if got := p.c.Hits(); got != 2*n {
			t.Errorf("%s: %d hits, want %d", p.c.Name, got, 2*n)
		}
	}
}

// TestOwnInt3: the program's own int3 reaches its SIGTRAP handler.
func TestOwnInt3(t *testing.T) {
	bin := workBin(t)
	want := checksum(t, bin, "1000", "1", "p", "trap")
	if !strings.Contains(want, "own trap 3") {
		t.Fatalf("unprobed: %q", want)
	}
	e := newEnv(t, Options{})
	f := startFixture(t, bin, "1000", "1", "p", "trap")
	p := e.register(bin, "f_push")
	runAllWant(t, []*fixture{f}, 60*time.Second, want)
	if got := p.c.Hits(); got != 1000 {
		t.Errorf("%d hits, want 1000", got)
	}
}

// startHeld returns the line an unprobed run of bin with args prints, then
// an env with options o and k hold-mode copies of bin running args in it
// (started after the env, so killed before it is closed).
func startHeld(t *testing.T, o Options, k int, bin string, args ...string) (*env, []*fixture, string) {
	t.Helper()
	want := checksum(t, bin, args...)
	e := newEnv(t, o)
	return e, startFixtures(t, k, bin, append(args[:len(args):len(args)], "hold")...), want
}

// holdAll lets hold-mode fixtures do their work and waits for each one's
// first output line.
func holdAll(t *testing.T, fs []*fixture) []string {
	t.Helper()
	for _, f := range fs {
		f.Go()
	}
	lines := make([]string, len(fs))
	for i, f := range fs {
		l, err := f.readLine(60 * time.Second)
		if err != nil {
			t.Fatalf("fixture %d: %v", f.Pid, err)
		}
		lines[i] = l
	}
	return lines
}

// release ends hold-mode fixtures and checks they exit 0.
func release(t *testing.T, fs []*fixture) {
	t.Helper()
	for _, f := range fs {
		f.Go()
	}
	for _, f := range fs {
		if out, code := f.Wait(30 * time.Second); code != 0 || out != "" {
			t.Errorf("fixture %d: exit %d, output %q", f.Pid, code, out)
		}
	}
}

// TestManyProcesses: 20 running copies of one binary all get the probe
// and all count; after unregister and Unwatch each one's text equals the
// file and it is not traced.
func TestManyProcesses(t *testing.T) {
	bin := workBin(t)
	const n = 2000
	e, fs, want := startHeld(t, Options{}, 20, bin, fmt.Sprint(n), "1", "ls")
	var mu sync.Mutex
	per := map[int]int{}
	p := e.register(bin, "f_load")
	// A second consumer on the same uprobe counts per process.
	c := &probes.Consumer{Name: "per-pid", Handler: func(u *probes.Uprobe, h probes.Hit) {
		mu.Lock()
		per[h.Pid]++
		mu.Unlock()
	}}
	if err := e.eng.Register(p.in, p.off, p.plan.Insn, p.plan, c); err != nil {
		t.Fatal(err)
	}
	ps := e.register(bin, "f_store")
	if got := p.c.Hits(); got != 0 {
		t.Errorf("hits before the work: %d", got)
	}
	if s := e.w.Stats(); s.Processes != 20 || s.Breakpoints != 40 {
		t.Errorf("stats after register: %+v", s)
	}
	lines := holdAll(t, fs)
	for i, l := range lines {
		if l != want {
			t.Errorf("fixture %d: %q, want %q", fs[i].Pid, l, want)
		}
	}
	mu.Lock()
	for _, f := range fs {
		if per[f.Pid] != n {
			t.Errorf("pid %d: %d hits, want %d", f.Pid, per[f.Pid], n)
		}
	}
	mu.Unlock()
	if got := ps.c.Hits(); got != 20*n {
		t.Errorf("f_store: %d hits, want %d", got, 20*n)
	}
	if got := p.c.Hits(); got != 20*n {
		t.Errorf("f_load: %d hits, want %d", got, 20*n)
	}
	if err := e.eng.Unregister(p.in, p.off, c); err != nil {
		t.Fatal(err)
	}
	e.unregister(p)
	e.unregister(ps)
	e.w.Unwatch(p.in)
	for _, f := range fs {
		wantUntouched(t, f.Pid, bin)
	}
	if s := e.w.Stats(); s.Processes != 0 || s.Threads != 0 || s.Errors != 0 {
		t.Errorf("stats after unwatch: %+v", s)
	}
	release(t, fs)
}

// TestCloseLive: Close with probes live, while the processes hit them,
// leaves them running, untraced, with their original bytes.
func TestCloseLive(t *testing.T) {
	bin := workBin(t)
	const n = 200000
	e, fs, want := startHeld(t, Options{}, 3, bin, fmt.Sprint(n), "2", "lp")
	p := e.register(bin, "f_load")
	e.register(bin, "f_push")
	for _, f := range fs {
		f.Go()
	}
	deadline := time.Now().Add(30 * time.Second)
	for p.c.Hits() < 3000 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := e.w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		wantUntouched(t, f.Pid, bin)
	}
	for _, f := range fs {
		l, err := f.readLine(60 * time.Second)
		if err != nil || l != want {
			t.Errorf("fixture %d: %q %v, want %q", f.Pid, l, err, want)
		}
	}
	release(t, fs)
}

// TestOthersTracee: a process traced by strace is reported as skipped and
// not harmed; the others get the probe.
func TestOthersTracee(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace not installed")
	}
	bin := workBin(t)
	const n = 3000
	want := checksum(t, bin, fmt.Sprint(n), "1", "l")
	e := newEnv(t, Options{})
	a := startFixture(t, bin, fmt.Sprint(n), "1", "l")
	b := startFixture(t, bin, fmt.Sprint(n), "1", "l")
	st := exec.Command("strace", "-p", fmt.Sprint(a.Pid), "-o", "/dev/null")
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	stDone := make(chan error, 1)
	go func() { stDone <- st.Wait() }()
	t.Cleanup(func() {
		st.Process.Signal(syscall.SIGTERM)
		select {
		case <-stDone:
		case <-time.After(10 * time.Second):
			st.Process.Kill()
			<-stDone
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for tracerPid(t, a.Pid) != st.Process.Pid {
		if time.Now().After(deadline) {
			t.Fatal("strace did not attach")
		}
		time.Sleep(5 * time.Millisecond)
	}
	p := e.register(bin, "f_load")
	sk := e.w.Skipped(p.in)
	if len(sk) != 1 || sk[0].Pid != a.Pid || !strings.Contains(sk[0].Reason, "traced") {
		t.Errorf("skipped: %+v", sk)
	}
	runAllWant(t, []*fixture{a, b}, 60*time.Second, want)
	if got := p.c.Hits(); got != n {
		t.Errorf("%d hits, want %d (b's only)", got, n)
	}
}

// TestPokeData: with PTRACE_POKEDATA instead of /proc/PID/mem writes.
func TestPokeData(t *testing.T) {
	bin := workBin(t)
	const n = 3000
	want := checksum(t, bin, fmt.Sprint(n), "2", "lpc")
	e := newEnv(t, Options{ForcePokeData: true})
	f := startFixture(t, bin, fmt.Sprint(n), "2", "lpc", "hold")
	var ps []*probe
	for _, loc := range []string{"f_load", "f_push", "f_call"} {
		ps = append(ps, e.register(bin, loc))
	}
	if l := holdAll(t, []*fixture{f}); l[0] != want {
		t.Errorf("output %q, want %q", l[0], want)
	}
	for _, p := range ps {
		if got := p.c.Hits(); got != 2*n {
			t.Errorf("%s: %d hits, want %d", p.c.Name, got, 2*n)
		}
		e.unregister(p)
	}
	e.w.Unwatch(ps[0].in)
	wantUntouched(t, f.Pid, bin)
	release(t, []*fixture{f})
}

// TestFork: a traced process forks a child that hits the probe too, and
// another that execs an unwatched binary; both end well, all hits count.
func TestFork(t *testing.T) {
	bin := workBin(t)
	const n = 3000
	for _, mode := range []string{"fork", "forkexec"} {
		t.Run(mode, func(t *testing.T) {
			want := checksum(t, bin, fmt.Sprint(n), "1", "lp", mode)
			e := newEnv(t, Options{})
			f := startFixture(t, bin, fmt.Sprint(n), "1", "lp", mode)
			pl := e.register(bin, "f_load")
			pp := e.register(bin, "f_push")
			runAllWant(t, []*fixture{f}, 60*time.Second, want)
			wantHits := uint64(n)
			if mode == "fork" {
				wantHits = 2 * n
			}
			for _, p := range []*probe{pl, pp} {
				if got := p.c.Hits(); got != wantHits {
					t.Errorf("%s: %d hits, want %d", p.c.Name, got, wantHits)
				}
			}
			if s := e.w.Stats(); s.Processes != 0 || s.Threads != 0 || s.Errors != 0 {
				t.Errorf("stats: %+v", s)
			}
		})
	}
}

// TestUnregisterWhileHitting: unregistering while threads hit the
// breakpoints (traps racing with the removal restart the instruction),
// then Unwatch detaching the running process: output unchanged.
func TestUnregisterWhileHitting(t *testing.T) {
	bin := workBin(t)
	const n = 300000
	want := checksum(t, bin, fmt.Sprint(n), "2", "lpe")
	e := newEnv(t, Options{})
	f := startFixture(t, bin, fmt.Sprint(n), "2", "lpe", "hold")
	var ps []*probe
	for _, loc := range []string{"f_load", "f_push", "f_endbr"} {
		ps = append(ps, e.register(bin, loc))
	}
	f.Go()
	deadline := time.Now().Add(30 * time.Second)
	for ps[0].c.Hits() < 5000 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for _, p := range ps {
		e.unregister(p)
	}
	e.w.Unwatch(ps[0].in)
	wantUntouched(t, f.Pid, bin)
	l, err := f.readLine(60 * time.Second)
	if err != nil || l != want {
		t.Errorf("output %q %v, want %q", l, err, want)
	}
	release(t, []*fixture{f})
	if s := e.w.Stats(); s.Errors != 0 || s.Processes != 0 {
		t.Errorf("stats: %+v", s)
	}
}
