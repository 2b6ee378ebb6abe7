package integration

import (
	"bytes"
	"fmt"
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
	trap.wantByte(off, 0xcc, "j_func (the trap process)")

	for _, j := range procs {
		j.send(fmt.Sprintf("spin %d", T))
	}
	for _, j := range procs {
		j.expect("ok 1")
	}
	h := d.waitHitsAbove(P+"/j_func", 0)
	d.waitHitsAbove(P+"/j_func", h+1000000)
	for _, j := range procs {
		d.wantMode(P+"/j_func", j.pid(), modeJump, "while spinning")
	}

	unmounted := d.killForGuardian()

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
	d.logGuardian()
}

// TestJumpRestartAfterKill: after a SIGKILL of the daemon, the jmp of a
// live jump site stays in the process (the guardian leaves it: the process
// runs on through its trampoline). A new daemon registering the probe
// again takes the old jmp back (an int3, the file's bytes behind it), makes
// its own jump site, and counts exactly; its removal leaves the file's
// text; the process is unharmed throughout.
func TestJumpRestartAfterKill(t *testing.T) {
	d, P, j := startJumpRig(t)
	off := testfix.SymOff(t, j.bin, "j_func")
	const T, N = 8, 100000
	d.probeJump(P, "j_func", j)
	j.batch(T, N)
	d.killForGuardian()
	j.batch(T, N) // through the orphaned trampoline
	j.wantByte(off, 0xe9, "j_func after the daemon's death (the jmp left)")

	d2 := startDaemon(t)
	P = d2.in(j.bin)
	d2.probeJump(P, "j_func", j)
	j.batch(T, N)
	d2.wantHits(P+"/j_func", T*N)
	d2.must("rmdir " + P + "/j_func")
	j.checkOriginal(off) // after the new daemon's removal
	j.batch(T, N)
	j.finish()
}
