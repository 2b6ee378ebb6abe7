package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/procfs"
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

// probedTree returns treeBins, a fanotify env, and a probe on tree's
// function "probed" in bin: the start of the new-process tests.
func probedTree(t *testing.T) (bin, other string, e *env, p *probe) {
	t.Helper()
	bin, other = treeBins(t)
	e = newFanEnv(t, Options{})
	return bin, other, e, e.register(bin, "probed")
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
			t.Errorf("still tracing: %+v\n%s", s, w.debugState())
			return s
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// procsOf returns the pids of live processes whose program is one of bins.
func procsOf(bins ...string) []int {
	pids, _ := procfs.ListPids()
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
	bin, _, e, p := probedTree(t)
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
			e := newFanEnv(t, Options{})
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
	bin, other, e, p := probedTree(t)
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

// TestExecProfile: the exec profile (Stats' Exec fields) counts every exec
// of a probed binary and the steps of its hold: one fanotify hold and one
// exec event per run, loader traps, and no jump switch while the loader
// runs (a new image's site becomes a jump at its first hit, in main here);
// every call counts.
func TestExecProfile(t *testing.T) {
	bin, _, e, p := probedTree(t)
	const runs = 5
	// A first run reads the libraries' ELF files (cached after it).
	if out, code := run(t, 10*time.Second, bin, "leaf", "5"); code != 0 || out != "" {
		t.Fatalf("first run: exit %d output %q", code, out)
	}
	before, hits := e.w.Stats(), p.c.Hits()
	for i := 0; i < runs; i++ {
		if out, code := run(t, 10*time.Second, bin, "leaf", "5"); code != 0 || out != "" {
			t.Fatalf("run %d: exit %d output %q", i, code, out)
		}
	}
	s := e.w.Stats()
	if n := s.Execs - before.Execs; n != runs {
		t.Errorf("execs %d, want %d", n, runs)
	}
	if n := s.ExecFans - before.ExecFans; n != runs {
		t.Errorf("fanotify holds %d, want %d", n, runs)
	}
	if n := s.ExecLoaderTraps - before.ExecLoaderTraps; n < runs {
		t.Errorf("loader traps %d, want %d or more (a dynamic binary)", n, runs)
	}
	if n := s.ExecSwitches - before.ExecSwitches; n != 0 {
		t.Errorf("%d jump switches while loading, want none (the first hit switches)", n)
	}
	if got := p.c.Hits() - hits; got != 5*runs {
		t.Errorf("%d hits, want %d", got, 5*runs)
	}
	for what, d := range map[string]time.Duration{"fanotify": s.ExecFan - before.ExecFan, "attach": s.ExecAttach - before.ExecAttach,
		"loader": s.ExecLoader - before.ExecLoader} {
		if d <= 0 {
			t.Errorf("%s: %v spent", what, d)
		}
	}
	t.Logf("per exec: fanotify %v, exec event %v, loader %v in %d traps, switch %v in %d",
		(s.ExecFan-before.ExecFan)/runs, (s.ExecAttach-before.ExecAttach)/runs, (s.ExecLoader-before.ExecLoader)/runs,
		s.ExecLoaderTraps-before.ExecLoaderTraps, (s.ExecSwitch-before.ExecSwitch)/runs, s.ExecSwitches-before.ExecSwitches)
}

// TestNewImageJumpsAtFirstHit: in a process started after the probe was
// registered, the site stays an int3 while the process starts (no region
// is mapped, no thread stopped for it) and becomes a jump site at its
// first hit; every call of its 4 threads counts.
func TestNewImageJumpsAtFirstHit(t *testing.T) {
	bin := workBin(t)
	e := newFanEnv(t, Options{})
	p := e.register(bin, "f_push")
	const n, threads = 5000, 4
	f := startFixture(t, bin, fmt.Sprint(n), fmt.Sprint(threads), "p", "hold") // held at its exec, attached
	for deadline := time.Now().Add(10 * time.Second); len(e.siteModes(p)) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) { // polled: the exec event is the tracer's
			t.Fatal("the new process has no site after 10 s")
		}
	}
	e.w.Settle()
	if m := e.siteModes(p); len(m) != 1 || m[0] != "trap: a jump from its first hit (the process started after the probe)" {
		t.Fatalf("before any call: %q", m)
	}
	if sumMaps(t, f.Pid, func(m procfs.Mapping) int {
		if strings.Contains(m.Path, "uprobefs-jump") {
			return 1
		}
		return 0
	}) != 0 {
		t.Error("a jump region mapped before the first hit")
	}
	f.Go()
	if l, err := f.readLine(30 * time.Second); err != nil || !strings.HasPrefix(l, "sum ") {
		t.Fatalf("work: %q %v", l, err)
	}
	e.awaitJumps([]*probe{p}, 1)
	if got := p.c.Hits(); got != n*threads {
		t.Errorf("%d hits, want %d", got, n*threads)
	}
	f.Go()
	if _, code := f.Wait(30 * time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}
