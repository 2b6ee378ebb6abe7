package proc

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/kuprobe"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

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
