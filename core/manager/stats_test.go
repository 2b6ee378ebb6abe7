package manager

import (
	"strings"
	"testing"
	"time"
)

// TestStatsText: the control directory's stats carry the world's exec
// profile, as counts and nanoseconds.
func TestStatsText(t *testing.T) {
	s := Stats{Probes: 1, World: &WorldStats{Processes: 3, Execs: 2, ExecFans: 2, ExecAttach: 3 * time.Millisecond, ExecLoaderTraps: 4, ExecSwitch: 1500 * time.Microsecond}}
	got := s.Text()
	for _, want := range []string{"probes 1\n", "processes 3\n", "execs 2\n", "exec_fanotify_holds 2\n", "exec_attach_ns 3000000\n", "exec_loader_traps 4\n", "exec_switch_ns 1500000\n", "exec_switches 0\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("stats lack %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n"); n != strings.Count(got, " ") {
		t.Errorf("not one \"key value\" a line:\n%s", got)
	}
}
