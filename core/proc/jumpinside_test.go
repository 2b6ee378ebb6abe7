package proc

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
)

// TestJumpInsideStaysTrap: a probe inside the displaced range of a jump
// site takes the site back to its int3, and its trap steps over the first
// instruction alone: threads then stop between displaced instructions. When
// the inner probe goes, the site stays a trap in that process (a thread
// interrupted there by a signal would return into the jmp's bytes: fault
// async with f_slot+4 toggling died of SIGSEGV in 7 of 8 runs), and the
// calls still count exactly.
func TestJumpInsideStaysTrap(t *testing.T) {
	bin := harmBin(t)
	const n = 3000
	want := checksum(t, bin, "ignored", fmt.Sprint(n))
	e := newEnv(t, Options{})
	f := startFixture(t, bin, "ignored", fmt.Sprint(n)) // running before the probe: switched at once
	p := e.register(bin, "h_func")
	e.awaitJumps([]*probe{p}, 1)
	inner := e.register(bin, "h_func+1")
	if m := e.siteModes(p); len(m) != 1 || !strings.Contains(m[0], "is inside its displaced instructions") {
		t.Fatalf("with a probe inside: %q", m)
	}
	e.unregister(inner)
	var m []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		m = e.siteModes(p)
		if len(m) == 1 && (m[0] == "jump" || strings.Contains(m[0], "a breakpoint was at")) {
			break
		}
		if time.Now().After(deadline) { // polled: the switch is the tracer's background work
			t.Fatalf("after the inner probe went: %q", m)
		}
	}
	if !strings.Contains(m[0], "a breakpoint was at") {
		t.Fatalf("after the inner probe went: %q, want a trap for good", m)
	}
	f.Go()
	if out, code := f.Wait(60 * time.Second); code != 0 || out != want {
		t.Fatalf("exit %d output %q, want 0 %q", code, out, want)
	}
	if got := p.c.Hits(); got != n {
		t.Errorf("%d hits, want %d", got, n)
	}
}

// TestThreadInsideOtherTramp: a thread in the trampoline of a site whose
// displaced range overlaps another's (or stopped at its int3, about to be
// stepped over through it) is inside that other one: the trampoline jumps
// back into the middle of its range. A spawned process died of a jmp
// written at mixed+4 while a thread was in mixed+0's trampoline, on its
// way back to +8.
func TestThreadInsideOtherTramp(t *testing.T) {
	const region = 0x7f0000000000
	p := &process{}
	p.jump.regions = []*jumpRegion{{addr: region, used: 4}}
	site := func(vaddr uint64, n int, slot int) *jumpSite {
		return &jumpSite{vaddr: vaddr, plan: &install.JumpPlan{Len: n}, tramp: region + uint64(slot*trampStride)}
	}
	a := site(0x1000, 8, 1) // push, mov, imul: back to 0x1008
	b := site(0x1004, 8, 2) // imul, lea: [0x1004, 0x100c)
	c := site(0x2000, 5, 3) // elsewhere
	p.jump.sites = map[uint64]*jumpSite{a.vaddr: a, b.vaddr: b, c.vaddr: c}
	w := &World{}
	const tid = 7
	for _, tc := range []struct {
		what   string
		rip    uint64
		trap   bool // stopped at an int3, its trap deferred
		inside bool
	}{
		{"in a's trampoline", a.tramp + 3, false, true},
		{"at a's int3, its trap to come", a.vaddr + 1, true, true},
		{"in b's own trampoline", b.tramp + 3, false, false},
		{"at b's own int3, its trap to come", b.vaddr + 1, true, false},
		{"in c's trampoline", c.tramp + 3, false, false},
		{"at c's int3", c.vaddr + 1, true, false},
		{"before a, not trapped", a.vaddr + 1, false, false},
	} {
		w.deferred = nil
		if tc.trap {
			w.deferEvent(tid, unix.WaitStatus(int(unix.SIGTRAP)<<8|0x7f))
		}
		if _, got := w.threadInside(p, b, map[int]uint64{tid: tc.rip}); got != tc.inside {
			t.Errorf("%s (rip %#x): inside %v, want %v", tc.what, tc.rip, got, tc.inside)
		}
	}
}
