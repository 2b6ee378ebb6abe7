package proc

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/kuprobe"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestInterpretersVsKernel: private copies of bash, perl and libpython run
// a fixed program with a probe on one of their functions: our count (jump
// sites where they can be, a new process's first hits on the trap path
// until its switch) equals the kernel's uprobe count for the same copy,
// offset and program (kernel first, then ours, never both).
func TestInterpretersVsKernel(t *testing.T) {
	if err := kuprobe.Available(); err != nil {
		t.Skipf("kernel uprobes: %v", err)
	}
	for _, c := range []struct {
		name  string
		setup func(t *testing.T) (probed, bin string, args []string)
		fn    string
	}{
		{"bash", func(t *testing.T) (string, string, []string) {
			bash := testfix.Copy(t, "/bin/bash")
			script := `f() { x=$((x+1)); }; for ((i=0;i<300;i++)); do f; if ((i%7==0)); then g=$(f; echo $x); fi; done; echo $x`
			return bash, bash, []string{"--norc", "--noprofile", "-c", script}
		}, "find_function"},
		{"perl", func(t *testing.T) (string, string, []string) {
			perl := testfix.Copy(t, "/usr/bin/perl")
			return perl, perl, []string{"-e", `my $x = 0; for my $i (1..5000) { $x = $x + $i; } print "$x\n";`}
		}, "Perl_pp_add"},
		{"libpython", func(t *testing.T) (string, string, []string) {
			const lib = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"
			if _, err := os.Stat("/usr/include/python3.11/Python.h"); err != nil {
				t.Skip("no Python.h (python3.11-dev)")
			}
			dir := t.TempDir()
			cp := filepath.Join(dir, filepath.Base(lib))
			if err := os.WriteFile(cp, mustRead(t, lib), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(cp, filepath.Join(dir, "libpython3.11.so")); err != nil {
				t.Fatal(err)
			}
			bin := testfix.Build(t, "testdata/pyembed.c", "-O2", "-I/usr/include/python3.11",
				"-L"+dir, "-Wl,--no-as-needed", "-lpython3.11", "-Wl,-rpath,"+dir)
			return cp, bin, nil
		}, "PyLong_FromLong"},
	} {
		t.Run(c.name, func(t *testing.T) {
			probed, bin, args := c.setup(t)
			off, err := resolveIn(t, probed, c.fn)
			if err != nil {
				t.Skipf("%s without %s: %v", c.name, c.fn, err)
			}
			kp, err := kuprobe.Add(fmt.Sprintf("uprobefs_%s_%d", c.name, os.Getpid()), probed, off)
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
			kout, kcode := run(t, 30*time.Second, bin, args...)
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
			e := newFanEnv(t, Options{})
			p := e.register(probed, c.fn)
			if p.plan.Jump == nil {
				t.Fatalf("%s: no jump site: %s", c.fn, p.plan.NoJump)
			}
			out, code := run(t, 30*time.Second, bin, args...)
			if code != 0 || out != kout {
				t.Errorf("exit %d output %q, want 0 %q", code, out, kout)
			}
			if got := p.c.Hits(); got != kh {
				t.Errorf("%s: %d hits, kernel %d", c.fn, got, kh)
			}
			t.Logf("%s: kernel %d hits, ours %d (%d by jump sites)", c.fn, kh, p.c.Hits(), e.w.nJumpHits.Load())
			if e.w.nJumpHits.Load() == 0 {
				t.Errorf("%s: no hit counted by a jump site", c.fn)
			}
			if s := settle(t, e.w); s.Errors != 0 {
				t.Errorf("stats: %+v", s)
			}
		})
	}
}

// TestReturnProbesRealPrograms: return probes on functions of real
// programs, private copies only — bash's execute_command, find_variable and bind_variable (a
// shell loop with a function), perl's Perl_pp_entersub and Perl_newSViv (a
// recursive Perl sub) — count the returns the kernel's uretprobe counts on
// the same copy and offsets, run one after the other.
func TestReturnProbesRealPrograms(t *testing.T) {
	if err := kuprobe.Available(); err != nil {
		t.Fatalf("kernel uprobes: %v", err)
	}
	bash := testfix.Copy(t, "/bin/bash")
	perl := testfix.Copy(t, "/usr/bin/perl") // Debian links the interpreter in
	for _, c := range []struct {
		name, bin, file string
		fns             []string
		args            []string
	}{
		{"bash", bash, bash, []string{"execute_command", "find_variable", "bind_variable"},
			[]string{"-c", "n=0; for i in 1 2 3 4 5 6 7 8 9 10; do n=$((n+i)); f() { echo $1 > /dev/null; }; f $n; done"}},
		{"perl", perl, perl, []string{"Perl_pp_entersub", "Perl_newSViv"},
			[]string{"-e", "sub f { my $n = shift; return $n < 1 ? 0 : 1 + f($n - 1) } my $s = 0; $s += f(30) for 1..20; exit($s == 600 ? 0 : 1)"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			counts := make([]atomic.Int64, len(c.fns))
			for i, fn := range c.fns {
				e.registerRet(c.file, fn, &counts[i])
			}
			f := startFixture(t, c.bin, c.args...) // (it does not wait for a go line)
			if out, code := f.Wait(60 * time.Second); code != 0 {
				t.Fatalf("%s under uprobefs: exit %d %q", c.name, code, out)
			}
			e.w.Close()
			for i, fn := range c.fns {
				k := kernelReturnsIn(t, c.file, c.bin, fn, c.args...)
				if got := uint64(counts[i].Load()); got != k || k == 0 {
					t.Errorf("%s %s returns: %d, kernel %d", c.name, fn, got, k)
				} else {
					t.Logf("%s %s: %d returns, as the kernel", c.name, fn, got)
				}
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
