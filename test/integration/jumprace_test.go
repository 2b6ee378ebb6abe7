package integration

import (
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
	d, P, j := startJumpRig(t)
	j.spin(8)
	for range 20 {
		d.must("echo j_func > " + P + "/probes")
		d.must("rmdir " + P + "/j_func")
	}
	j.spinDone("after 20 registrations and removals")
	j.finish()
	if log := d.log.String(); strings.Contains(log, "WARNING: DATA RACE") {
		t.Fatalf("the daemon reported a data race:\n%s", log)
	}
}
