package integration

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/procfs"
)

// straced is a copy of the fixture run by "strace -f", whose child is the
// fixture process. Cleanup kills the child, then strace.
type straced struct {
	strace, child int
}

func startStraced(t *testing.T, bin string) straced {
	t.Helper()
	path, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not installed (make prereq installs it)")
	}
	cmd := exec.Command(path, "-f", "-o", "/dev/null", bin)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := straced{strace: cmd.Process.Pid}
	t.Cleanup(func() {
		if s.child > 0 {
			syscall.Kill(s.child, syscall.SIGKILL)
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	beat := make(chan error, 1)
	go func() {
		_, err := io.ReadFull(out, make([]byte, 1))
		beat <- err
		io.Copy(io.Discard, out)
	}()
	select {
	case err := <-beat:
		if err != nil {
			t.Fatalf("strace -f %s: %v", bin, err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("strace -f %s: no heartbeat", bin)
	}
	kids, err := procfs.Children(s.strace, s.strace)
	if err != nil || len(kids) != 1 {
		t.Fatalf("children of strace: %v %v", kids, err)
	}
	s.child = kids[0]
	return s
}

// TestStatusShowsLaterTracees: status lists, besides the processes it
// traces, the processes that started after registration under strace and
// those another uprobefs traces, each as "pid=P skipped: REASON". Before,
// only processes found at the first registration were listed.
func TestStatusShowsLaterTracees(t *testing.T) {
	d, P, fx := startFixtureRig(t, buildFixture(t))
	bin := fx.path
	d.must("echo tick > " + P + "/probes")
	s := startStraced(t, bin)
	st := d.must("cat " + P + "/tick/status")
	if want := fmt.Sprintf("pid=%d skipped: pid %d: already traced by pid %d (strace)\n", s.child, s.child, s.strace); !strings.Contains(st, want) {
		t.Fatalf("status = %q, want a line %q", st, want)
	}
	if !strings.HasPrefix(st, fmt.Sprintf("pid=%d vaddr=", fx.pid())) || strings.Count(st, "\n") != 2 {
		t.Fatalf("status = %q", st)
	}

	// A second uprobefs probes the same file: each lists what the other
	// traces, also for a process started after both registered.
	d2 := startDaemon(t)
	d2.must("echo tick > " + d2.in(bin) + "/probes")
	fx2 := startFixture(t, bin, -1) // held at its exec until one of them attached it
	tracer := fx2.tracerPid()
	owner, other := d, d2
	if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", d2.cmd.Process.Pid, tracer)); err == nil {
		owner, other = d2, d
	} else if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", d.cmd.Process.Pid, tracer)); err != nil {
		t.Fatalf("fixture %d traced by %d, a thread of neither daemon", fx2.pid(), tracer)
	}
	if st := owner.must("cat " + owner.in(bin) + "/tick/status"); !strings.Contains(st, fmt.Sprintf("pid=%d vaddr=", fx2.pid())) {
		t.Fatalf("status in the tracing daemon = %q", st)
	}
	st2 := other.must("cat " + other.in(bin) + "/tick/status")
	if want := fmt.Sprintf("pid=%d skipped: pid %d: already traced by pid %d (uprobefs)\n", fx2.pid(), fx2.pid(), tracer); !strings.Contains(st2, want) {
		t.Fatalf("status in the other daemon = %q, want a line %q", st2, want)
	}
	st2 = d2.must("cat " + d2.in(bin) + "/tick/status")
	for _, pid := range []int{fx.pid(), s.child} {
		if !strings.Contains(st2, fmt.Sprintf("pid=%d skipped: ", pid)) {
			t.Errorf("second daemon's status lacks pid %d: %q", pid, st2)
		}
	}
	if n := strings.Count(st2, "\n"); n != 3 {
		t.Errorf("second daemon's status has %d lines, want 3: %q", n, st2)
	}
}
