package proc

import (
	"fmt"
	"strings"
	"testing"
	"time"
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
