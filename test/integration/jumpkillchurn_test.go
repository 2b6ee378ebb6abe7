package integration

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

var jumpChurn = flag.Bool("jump.churn", false, "run TestJumpDaemonKilledChurn (a known bug)")

// lineOrEnd is line, but end of output is no failure: ok is false then.
func (j *jproc) lineOrEnd() (line string, ok bool) {
	j.t.Helper()
	select {
	case l, ok := <-j.lines:
		return l, ok
	case <-time.After(2 * time.Minute):
		j.t.Fatalf("jump fixture %d: no output in 2 minutes", j.pid())
	}
	return "", false
}

// death waits for the fixture, whose output ended, and returns the signal
// that killed it (0: none) and its exit status.
func (j *jproc) death() (syscall.Signal, int) {
	j.t.Helper()
	waited := make(chan error, 1)
	go func() { waited <- j.cmd.Wait() }()
	select {
	case err := <-waited:
		if ee, ok := err.(*exec.ExitError); ok {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				return ws.Signal(), -1
			}
			return 0, ee.ExitCode()
		}
		return 0, 0
	case <-time.After(30 * time.Second):
		j.cmd.Process.Kill()
		<-waited
		j.t.Fatalf("jump fixture %d: output ended, but it did not exit", j.pid())
	}
	return 0, 0
}

// TestJumpDaemonKilledChurn: SIGKILL of the daemon at a random moment while
// it registers and removes j_func over and over in 4 processes of 2
// threads calling it at full speed, so that the kill may come in the
// middle of a switch to or from a jump site, or of the injected system
// calls that map a process's trampoline region (a new daemon each round;
// the kill 50–550 ms after the first registration returned; rounds for
// 15 s, at least 3, until one fails: a kill in the bad moment is rare). Afterwards every process still alive
// holds, at j_func, either the file's bytes or a whole jmp (the file's
// bytes after its 5) into a trampoline region, never a mix; it finishes
// with the right sum and exit 0. A process that died was stopped in a
// trap hit at the kill: SIGTRAP (README), nothing else. The fixture runs
// with JUMP_DIAG: a SIGSEGV prints its registers and exits 139.
//
// Opt-in (go test ./test/integration -run Churn -args -jump.churn): it
// still fails about one run in two — a process dies of SIGSEGV, having
// run on past an int3 without its instruction — a known bug of a daemon
// killed in the middle of a switch or a trap (README, known limits); it
// is not part of make test until that is fixed.
func TestJumpDaemonKilledChurn(t *testing.T) {
	if !*jumpChurn {
		t.Skip("opt-in: -args -jump.churn (a known bug: see the comment)")
	}
	src := testfix.CC(t, "testdata/jump.c", "-O2", "-pthread", "-fcf-protection=none")
	const nProc, T = 4, 2
	alive, trapped, jumps, rounds := 0, 0, 0, 0
	for start := time.Now(); (rounds < 3 || time.Since(start) < 15*time.Second) && !t.Failed(); rounds++ {
		round := rounds
		diag := filepath.Join(t.TempDir(), "segv")
		t.Setenv("JUMP_DIAG", diag)
		d := startDaemon(t)
		bin := testfix.Copy(t, src)
		off := testfix.SymOff(t, bin, "j_func")
		file := fileBytes(t, bin, off, 16)
		P := d.in(bin)
		var procs []*jproc
		for range nProc {
			j := startJump(t, bin)
			j.spin(T)
			procs = append(procs, j)
		}
		delay := time.Duration(50+(round*397+time.Now().Nanosecond())%500) * time.Millisecond
		var kill *time.Timer
		cycles := 0
	churn:
		for {
			select {
			case <-d.done:
				break churn
			default:
			}
			if d.sh("echo j_func > "+P+"/probes").code == 0 {
				cycles++
				if cycles == 1 { // registrations take long under load: from now
					kill = time.AfterFunc(delay, func() { d.cmd.Process.Signal(syscall.SIGKILL) })
				}
				if cycles%4 == 0 { // let the sites become jumps (until the mount dies)
					deadline := time.Now().Add(5 * time.Second)
					for time.Now().Before(deadline) {
						r := d.sh("cat " + P + "/j_func/status")
						if r.code != 0 || strings.Count(r.out, " jump\n") == nProc {
							break
						}
						time.Sleep(5 * time.Millisecond)
					}
				}
			}
			d.sh("rmdir " + P + "/j_func")
		}
		if kill != nil {
			kill.Stop()
		}
		if isMounted(d.mnt) {
			t.Fatalf("round %d: the dead mount is still mounted after the guardian exited\n%s", round, d.log.String())
		}
		for i, j := range procs {
			_, err := io.WriteString(j.stdin, "stop\n")
			l, ok := j.lineOrEnd()
			if !ok {
				sig, code := j.death()
				switch {
				case sig == syscall.SIGTRAP:
					trapped++
				case code == 139:
					b, _ := os.ReadFile(diag)
					t.Errorf("round %d (SIGKILL %v after the first of %d registrations): process %d (pid %d) got SIGSEGV; its registers (tid, then the stack from rsp-32):\n%s",
						round, delay, cycles, i, j.pid(), b)
				default:
					t.Errorf("round %d: process %d (pid %d) ended by signal %d (%v), exit %d, want SIGTRAP (write of stop: %v)", round, i, j.pid(), int(sig), sig, code, err)
				}
				continue
			}
			var c, sum, want uint64
			if _, err := fmt.Sscanf(l, "spin %d sum %d want %d", &c, &sum, &want); err != nil || sum != want {
				t.Errorf("round %d: process %d (pid %d): %q, want spin C sum S want S", round, i, j.pid(), l)
			}
			got := j.text(off, 16)
			switch {
			case bytes.Equal(got, file):
			case got[0] == 0xe9 && bytes.Equal(got[5:], file[5:]):
				tgt := jmpDest(textVaddr(t, j.pid(), j.bin, off), got)
				jumps++
				if regionInode(jumpMaps(t, j.pid()), tgt) == "" {
					t.Errorf("round %d: process %d (pid %d): a jmp at j_func to %#x, in no trampoline region", round, i, j.pid(), tgt)
				}
			default:
				t.Errorf("round %d: process %d (pid %d): j_func holds % x, file % x (neither the file's nor a whole jmp)", round, i, j.pid(), got, file)
			}
			alive++
			j.finish()
		}
		t.Logf("round %d: SIGKILL %v after the first of %d registrations", round, delay, cycles)
	}
	t.Logf("%d rounds: %d processes finished (%d with a jmp left at j_func, the others with the file's bytes), %d died of SIGTRAP",
		rounds, alive, jumps, trapped)
}
