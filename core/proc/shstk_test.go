package proc

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

var callLocs = []string{"f_calls+0x1", "f_calls+0xf", "f_calls+0x13", "f_calls+0x1c"}

// TestBranchSlots: with every thread treated as running a CET shadow stack,
// probed calls (direct, through a register, through memory) and ret run
// for real in branch slots instead of being emulated: same output, every
// hit counted. This runs the shadow-stack path on any CPU; whether the CPU
// keeps its shadow stack in step is TestShadowStackReal's.
func TestBranchSlots(t *testing.T) {
	bin := faultBin(t)
	e := newEnv(t, Options{ForceShadowStack: true})
	ps := harmRun(t, e, bin, callLocs, "calls", "500")
	for i, p := range ps {
		if !p.plan.IsCallOrRet() {
			t.Fatalf("%s is %s, want a call or ret", callLocs[i], p.plan)
		}
		if got := p.c.Hits(); got != 500 {
			t.Errorf("%s: %d hits, want 500", callLocs[i], got)
		}
	}
}

// TestShadowStackReal runs the calls fixture with a user shadow stack
// enabled (glibc tunable, fixture built with -fcf-protection) and probes
// its calls and ret without forcing: the tracer finds the shadow stack
// and the program survives with exact counts (emulation would have
// killed it with a control-protection fault at the next ret). It needs a
// CPU and kernel with user shadow stacks, and says so when it cannot run.
func TestShadowStackReal(t *testing.T) {
	cpu, _ := os.ReadFile("/proc/cpuinfo")
	if !strings.Contains(string(cpu), " user_shstk") {
		t.Skip("NOT RUN: this CPU/kernel has no user shadow stack (no user_shstk in /proc/cpuinfo); TestBranchSlots covers the slot path")
	}
	bin := testfix.Copy(t, buildOnce(t, "fault", "-O2", "-fcf-protection=full"))
	t.Setenv("GLIBC_TUNABLES", "glibc.cpu.x86_shstk=on")
	f := startFixture(t, bin, "calls", "500")
	// The fixture waits for its go line in main, after the loader
	// enabled the shadow stack; its exec may still be under way.
	var st []byte
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", f.Pid))
		st, _ = os.ReadFile(fmt.Sprintf("/proc/%d/status", f.Pid))
		if exe == bin && strings.Contains(string(st), "shstk") {
			break
		}
	}
	if !strings.Contains(string(st), "shstk") {
		t.Skipf("NOT RUN: the fixture did not get a shadow stack (glibc or kernel refused): %q", featureLine(string(st)))
	}
	e := newEnv(t, Options{})
	var ps []*probe
	for _, loc := range callLocs {
		ps = append(ps, e.register(bin, loc))
	}
	f.Go()
	out, code := f.Wait(90 * time.Second)
	want, err := exec.Command("sh", "-c", "echo go | "+bin+" calls 500").Output()
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || out != string(want) {
		t.Fatalf("exit %d output %q, want 0 %q", code, out, want)
	}
	for i, p := range ps {
		if got := p.c.Hits(); got != 500 {
			t.Errorf("%s: %d hits, want 500", callLocs[i], got)
		}
	}
}

func featureLine(status string) string {
	for _, l := range strings.Split(status, "\n") {
		if strings.HasPrefix(l, "x86_Thread_features:") {
			return l
		}
	}
	return "(no x86_Thread_features line)"
}
