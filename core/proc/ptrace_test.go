package proc

import (
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
)

// TestPtraceDataSurvivesStackMoves calls the ptrace wrappers that fill a
// caller's variable (GETSIGINFO, GETREGS, GETSIGMASK, PEEKDATA) at every
// stack depth from 0 to a few thousand frames, with stacks shrunk by GC in
// between, so that the goroutine's stack grows (moves) inside the wrappers
// many times. When the data pointer travelled as a uintptr, a move left the
// kernel writing the old stack: the siginfo read as zeros (a hit taken for
// a signal not ours: the process died of SIGTRAP, issue 11 item 14), and
// PEEKDATA's zero word was poked back over text.
func TestPtraceDataSurvivesStackMoves(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := ptraceSeize(pid); err != nil {
		t.Fatal(err)
	}
	unix.Tgkill(pid, pid, unix.SIGUSR1)
	var st unix.WaitStatus
	for range 10 {
		// Seized maybe before its exec completed: the exec stop first.
		if _, err := wait4(pid, &st, false); err != nil || !st.Stopped() {
			t.Fatalf("wait: %v %v", st, err)
		}
		if st.StopSignal() == unix.SIGUSR1 && st.TrapCause() <= 0 {
			break
		}
		ptraceCont(pid, 0)
	}
	if st.StopSignal() != unix.SIGUSR1 {
		t.Fatalf("no SIGUSR1 stop: %v", st)
	}
	var want install.Regs
	if err := ptraceGetRegs(pid, &want); err != nil {
		t.Fatal(err)
	}
	word, err := ptracePeekData(pid, uintptr(want.Rsp))
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for depth := range 3000 {
		if depth%100 == 0 {
			runtime.GC() // shrinks the stack: it grows again below
		}
		bad += atDepth(depth, func() int {
			n := 0
			var si siginfo
			if ptraceGetSiginfo(pid, &si) != nil || si.signo() != int32(unix.SIGUSR1) {
				n++
			}
			var r install.Regs
			if ptraceGetRegs(pid, &r) != nil || r != want {
				n++
			}
			var mask uint64 = 1
			if ptraceGetSigmask(pid, &mask) != nil || mask != 0 {
				n++
			}
			if w, err := ptracePeekData(pid, uintptr(want.Rsp)); err != nil || w != word {
				n++
			}
			return n
		})
	}
	if bad != 0 {
		t.Errorf("%d ptrace reads of 12000 came back wrong", bad)
	}
	ptraceDetach(pid, 0)
}

// atDepth calls f under depth extra stack frames.
//
//go:noinline
func atDepth(depth int, f func() int) int {
	var pad [16]uint64
	pad[depth%16] = uint64(depth)
	if depth == 0 {
		return f() + int(pad[0]&0)
	}
	return atDepth(depth-1, f) + int(pad[depth%16]&0)
}
