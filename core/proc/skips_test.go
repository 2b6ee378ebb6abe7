package proc

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/procfs"
)

// TestOthersTraceeLater: a process that execs the watched file under strace
// after Watch is listed by Skipped with strace as the reason (before, only
// the processes found by Watch itself were), and is not harmed; one that
// exits is no longer listed. With fanotify (the exec is held) and without
// (the /proc rescan finds it).
func TestOthersTraceeLater(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace not installed")
	}
	t.Run("fanotify", func(t *testing.T) { testOthersTraceeLater(t, Options{}) })
	t.Run("rescan", func(t *testing.T) { testOthersTraceeLater(t, Options{NoFanotify: true}) })
}

func testOthersTraceeLater(t *testing.T, o Options) {
	strace, _ := exec.LookPath("strace")
	bin := workBin(t)
	const n = 3000
	want := checksum(t, bin, fmt.Sprint(n), "1", "l")
	e := newEnv(t, o)
	a := startFixture(t, bin, fmt.Sprint(n), "1", "l")
	p := e.register(bin, "f_load")
	if sk := e.w.Skipped(p.in); len(sk) != 0 {
		t.Fatalf("skipped before strace: %+v", sk)
	}
	// strace runs under the relay; its child execs bin.
	s := startFixture(t, strace, "-f", "-o", "/dev/null", bin, fmt.Sprint(n), "1", "l")
	child := 0
	deadline := time.Now().Add(15 * time.Second)
	for child == 0 {
		kids, _ := procfs.Children(s.Pid, s.Pid)
		for _, k := range kids {
			if procfs.PidMaps(k, procfs.FileID(p.in.Key)) {
				child = k
			}
		}
		if child == 0 {
			if time.Now().After(deadline) {
				t.Fatal("strace's child never mapped the fixture")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	sk := e.w.Skipped(p.in)
	if len(sk) != 1 || sk[0].Pid != child || !strings.Contains(sk[0].Reason, fmt.Sprintf("already traced by pid %d (strace)", s.Pid)) {
		t.Errorf("skipped: %+v, want pid %d traced by strace (pid %d)", sk, child, s.Pid)
	}
	runAllWant(t, []*fixture{a, s}, 60*time.Second, want)
	if got := p.c.Hits(); got != n {
		t.Errorf("%d hits, want %d (a's only)", got, n)
	}
	if sk := e.w.Skipped(p.in); len(sk) != 0 {
		t.Errorf("skipped after every process ended: %+v", sk)
	}
}
