package proc

import (
	"testing"
	"time"
)

// TestPlaceFollow: with the tracer following the tracee's CPU at
// SCHED_IDLE, hits are still exact and the program's output unchanged.
func TestPlaceFollow(t *testing.T) {
	t.Parallel()
	bin := workBin(t)
	const n = 2000
	want := checksum(t, bin, "2000", "1", "l")
	e := newEnv(t, Options{Placement: PlaceFollow})
	f := startFixture(t, bin, "2000", "1", "l")
	p := e.register(bin, "f_load")
	runAllWant(t, []*fixture{f}, 120*time.Second, want)
	if got := p.c.Hits(); got != n {
		t.Errorf("%d hits, want %d", got, n)
	}
}
