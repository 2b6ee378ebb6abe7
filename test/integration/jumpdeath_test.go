package integration

import (
	"bytes"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestJumpDaemonKilled (issue 12, "Our own death"): 10 processes of 8
// threads each hit a jump site at full speed when the daemon is SIGKILLed.
// None of them ever stops for a hit, so all run on through their
// trampolines (left in place by the guardian) and finish with the right
// sum and exit status 0. One more process, of another copy, has its probe
// on the trap path (it fetches an argument: an int3): idle at the kill,
// the guardian restores its text, and it then runs its calls and exits 0.
func TestJumpDaemonKilled(t *testing.T) {
	d := startDaemon(t)
	src := testfix.CC(t, "testdata/jump.c", "-O2", "-pthread", "-fcf-protection=none")
	bin, trapBin := testfix.Copy(t, src), testfix.Copy(t, src)
	off := testfix.SymOff(t, bin, "j_func")
	const nProc, T = 10, 8
	P, PT := d.in(bin), d.in(trapBin)

	var procs []*jproc
	for range nProc {
		procs = append(procs, startJump(t, bin))
	}
	trap := startJump(t, trapBin)
	d.must("echo j_func > " + P + "/probes")
	d.must("echo 'p:j_func j_func %di' > " + PT + "/probes")
	for _, j := range procs {
		d.waitMode(P+"/j_func", j.pid(), modeJump)
	}
	d.waitMode(PT+"/j_func", trap.pid(), "trap: fetch arguments")
	trap.batch(T, 100)
	d.wantHits(PT+"/j_func", T*100)
	if b := trap.text(off, 1)[0]; b != 0xcc {
		t.Fatalf("trap process: first byte of j_func %#x, want 0xcc", b)
	}

	for _, j := range procs {
		j.send(fmt.Sprintf("spin %d", T))
	}
	for _, j := range procs {
		j.expect("ok 1")
	}
	h := d.waitHitsAbove(P+"/j_func", 0)
	d.waitHitsAbove(P+"/j_func", h+1000000)
	for _, j := range procs {
		if m, _ := d.siteLine(P+"/j_func", j.pid()); m != modeJump {
			t.Fatalf("pid %d: status %q while spinning, want %q", j.pid(), m, modeJump)
		}
	}

	t0 := time.Now()
	d.cmd.Process.Signal(syscall.SIGKILL)
	for isMounted(d.mnt) {
		if time.Since(t0) > 10*time.Second {
			t.Fatalf("the dead mount is still mounted after 10s\n%s", d.log.String())
		}
		time.Sleep(time.Millisecond)
	}
	unmounted := time.Since(t0)
	select {
	case <-d.done: // the daemon, and the guardian that shares its stderr
	case <-time.After(10 * time.Second):
		t.Fatalf("guardian did not exit\n%s", d.log.String())
	}
	if !strings.Contains(d.log.String(), "uprobefs guardian: daemon pid") {
		t.Errorf("no guardian report in the log:\n%s", d.log.String())
	}

	// The spinners: still hitting their jump sites, which stay.
	var calls uint64
	for i, j := range procs {
		if b := j.text(off, 1)[0]; b != 0xe9 {
			t.Errorf("process %d (pid %d): first byte of j_func %#x after the daemon's death, want the jump site's 0xe9", i, j.pid(), b)
		}
		c, l := j.stopSpin()
		if c == 0 {
			t.Errorf("process %d (pid %d): %q, want spin C sum S want S", i, j.pid(), l)
		}
		calls += c
		j.finish()
	}

	// The trap process: its int3 restored, it runs on the file's text.
	want := fileBytes(t, trapBin, off, 16)
	if got := trap.text(off, 16); !bytes.Equal(got, want) {
		t.Fatalf("trap process: j_func % x after the guardian, file % x", got, want)
	}
	trap.batch(T, 1000)
	trap.finish()

	t.Logf("daemon SIGKILL: %d of %d jump processes (%d calls in all) and the trap process finished; dead mount unmounted %v after the kill",
		nProc, nProc, calls, unmounted.Round(time.Microsecond))
	for l := range strings.Lines(d.log.String()) {
		if strings.Contains(l, "uprobefs guardian:") {
			t.Log(strings.TrimSpace(l))
		}
	}
}

// TestJumpRestartAfterKill: after a SIGKILL of the daemon, the jmp of a
// live jump site stays in the process (the guardian leaves it: the process
// runs on through its trampoline). A new daemon registering the probe
// again takes the old jmp back (an int3, the file's bytes behind it), makes
// its own jump site, and counts exactly; its removal leaves the file's
// text; the process is unharmed throughout.
func TestJumpRestartAfterKill(t *testing.T) {
	d := startDaemon(t)
	bin := jumpFixture(t)
	off := testfix.SymOff(t, bin, "j_func")
	const T, N = 8, 100000
	j := startJump(t, bin)
	d.must("echo j_func > " + d.in(bin) + "/probes")
	d.waitMode(d.in(bin)+"/j_func", j.pid(), modeJump)
	j.batch(T, N)
	d.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon and its guardian did not exit 10s after the SIGKILL")
	}
	if isMounted(d.mnt) {
		t.Fatal("the dead mount is still mounted after the guardian exited")
	}
	j.batch(T, N) // through the orphaned trampoline
	if b := j.text(off, 1)[0]; b != 0xe9 {
		t.Fatalf("first byte of j_func %#x after the daemon's death, want the left jmp's 0xe9", b)
	}

	d2 := startDaemon(t)
	P := d2.in(bin)
	d2.must("echo j_func > " + P + "/probes")
	d2.waitMode(P+"/j_func", j.pid(), modeJump)
	j.batch(T, N)
	d2.wantHits(P+"/j_func", T*N)
	d2.must("rmdir " + P + "/j_func")
	want := fileBytes(t, bin, off, 16)
	if got := j.text(off, 16); !bytes.Equal(got, want) {
		t.Fatalf("j_func % x after the new daemon's removal, file % x", got, want)
	}
	j.batch(T, N)
	j.finish()
}
