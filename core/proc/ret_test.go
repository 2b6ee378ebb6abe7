package proc

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/internal/kuprobe"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

func retBin(t *testing.T) string {
	return testfix.Copy(t, buildOnce(t, "ret", "-O2"))
}

// registerRet registers a return consumer at loc (a function's entry).
func (e *env) registerRet(bin, loc string, n *atomic.Int64) *probe {
	t := e.t
	t.Helper()
	off, plan := resolvePlan(t, bin, loc)
	in := e.watch(bin)
	p := &probe{c: &probes.Consumer{Name: loc + "%return", RetHandler: func(u *probes.Uprobe, r probes.Return) {
		if n != nil {
			n.Add(1)
		}
	}}, in: in, off: off, plan: plan}
	if err := e.eng.Register(in, off, plan.Insn, plan, p.c); err != nil {
		t.Fatalf("register %s: %v", loc, err)
	}
	return p
}

// kernelReturns runs bin args under the kernel's uretprobe at fn and
// returns the number of its events (returns) in a private trace instance
// (uprobe_profile counts a return probe's entries, not its returns).
func kernelReturns(t *testing.T, bin, fn string, args ...string) uint64 {
	t.Helper()
	return kernelReturnsIn(t, bin, bin, fn, args...)
}

// kernelReturnsIn is kernelReturns with the function in file (a library of
// prog).
func kernelReturnsIn(t *testing.T, file, bin, fn string, args ...string) uint64 {
	t.Helper()
	off, _ := resolvePlan(t, file, fn)
	name := fmt.Sprintf("ufsret%d%s", os.Getpid(), strings.ReplaceAll(fn, "_", ""))
	k, err := kuprobe.AddReturn(name, file, off)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Remove()
	inst, err := kuprobe.NewInstance(name)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	if err := inst.Enable(k); err != nil {
		t.Fatal(err)
	}
	f := startFixture(t, bin, args...)
	if !strings.HasPrefix(args[0], "-") {
		f.Go() // the fixtures wait for a go line; bash and perl do not
	}
	if _, code := f.Wait(60 * time.Second); code != 0 {
		t.Fatalf("under the kernel's uretprobe: exit %d", code)
	}
	inst.Disable(k)
	b, err := inst.Trace()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "LOST") {
		t.Fatal("the kernel's trace lost events")
	}
	return uint64(strings.Count(string(b), " "+name+": ("))
}

// TestReturnProbes: return probes on plain calls, recursion, functions
// left by longjmp (they never return), a tail call (alone, and chained
// with a probe on the function it jumps to), and a function that forks
// (both processes return through it): the program's output is the
// unprobed run's, and the returns counted equal the kernel's uretprobe
// counts on the same binary and offsets, run one after the other.
func TestReturnProbes(t *testing.T) {
	if err := kuprobe.Available(); err != nil {
		t.Fatalf("kernel uprobes: %v", err)
	}
	for _, c := range []struct {
		mode string
		fns  []string
	}{
		{"calls", []string{"leaf"}},
		{"recurse", []string{"rec"}},
		{"longjmp", []string{"jumper", "thrower", "leaf"}},
		{"tail", []string{"tailer"}},
		{"tail", []string{"tailer", "leaf"}},
		{"fork", []string{"forker"}},
	} {
		t.Run(c.mode+"/"+strings.Join(c.fns, "+"), func(t *testing.T) {
			bin := retBin(t)
			args := []string{c.mode, "200"}
			want := checksum(t, bin, args...)
			e := newEnv(t, Options{})
			counts := make([]atomic.Int64, len(c.fns))
			for i, fn := range c.fns {
				e.registerRet(bin, fn, &counts[i])
			}
			f := startFixture(t, bin, args...)
			f.Go()
			if out, code := f.Wait(60 * time.Second); code != 0 || out != want {
				t.Fatalf("exit %d %q, want 0 %q", code, out, want)
			}
			e.w.Close()
			for i, fn := range c.fns {
				k := kernelReturns(t, bin, fn, args...)
				if got := uint64(counts[i].Load()); got != k {
					t.Errorf("%s returns: %d, kernel %d", fn, got, k)
				} else {
					t.Logf("%s: %d returns, as the kernel", fn, got)
				}
			}
		})
	}
}

// TestReturnProbeDetach: a thread inside a return-probed function (its
// return address replaced) when the probe is removed and the process
// detached: the return address is put back, and the function returns to
// its caller untraced (it died of SIGTRAP on the trampoline otherwise).
func TestReturnProbeDetach(t *testing.T) {
	bin := retBin(t)
	e := newEnv(t, Options{})
	var entries, returns atomic.Int64
	entry := e.register(bin, "blocker")
	ent := &probes.Consumer{Name: "entry", Handler: func(*probes.Uprobe, probes.Hit) { entries.Add(1) }}
	if err := e.eng.Register(entry.in, entry.off, entry.plan.Insn, entry.plan, ent); err != nil {
		t.Fatal(err)
	}
	ret := e.registerRet(bin, "blocker", &returns)
	f := startFixture(t, bin, "block", "1")
	f.Go() // main's line; blocker then waits for the next one
	for deadline := time.Now().Add(20 * time.Second); entries.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("blocker never entered")
		}
	}
	for _, p := range []*probe{entry, ret} {
		e.unregister(p)
	}
	e.eng.Unregister(entry.in, entry.off, ent)
	e.w.Unwatch(entry.in)
	for deadline := time.Now().Add(20 * time.Second); tracerPid(t, f.Pid) != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("still traced")
		}
	}
	if _, err := f.stdin.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	out, code := f.Wait(30 * time.Second)
	if code != 0 || out != "block 1 got 6 hello\n" {
		t.Fatalf("after the detach: exit %d %q", code, out)
	}
	if returns.Load() != 0 {
		t.Errorf("%d returns counted after the probe was removed", returns.Load())
	}
}
