package integration

import (
	"fmt"
	"strings"
	"testing"
)

// TestJumpRemoveRace: under -race, the daemon (built with -race too) must
// report no data race while a probe is removed right after its
// registration, when the switch of its sites to jumps may still be
// pending on the tracer: 20 times, with 8 threads hitting j_func.
func TestJumpRemoveRace(t *testing.T) {
	if !raceEnabled {
		t.Skip("only a -race daemon reports data races")
	}
	d := startDaemon(t)
	bin := jumpFixture(t)
	P := d.in(bin)
	j := startJump(t, bin)
	j.send(fmt.Sprintf("spin %d", 8))
	j.expect("ok 1")
	for range 20 {
		d.must("echo j_func > " + P + "/probes")
		d.must("rmdir " + P + "/j_func")
	}
	if c, l := j.stopSpin(); c == 0 {
		t.Fatalf("%q, want spin C sum S want S", l)
	}
	j.finish()
	if log := d.log.String(); strings.Contains(log, "WARNING: DATA RACE") {
		t.Fatalf("the daemon reported a data race:\n%s", log)
	}
}
