package proc

import (
	"bytes"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// syscallInsn returns the address of a "syscall" instruction in p: the
// head of a slot page, or one found in the vdso.
func (w *World) syscallInsn(p *process) (uint64, error) {
	if len(p.xol.pages) > 0 {
		return p.xol.pages[0].addr, nil
	}
	ms, err := procfs.ReadMaps(p.pid)
	if err != nil {
		return 0, err
	}
	for _, m := range ms {
		if m.Path != "[vdso]" || !m.Exec() {
			continue
		}
		b := make([]byte, m.End-m.Start)
		if err := p.as.ReadMemory(m.Start, b); err != nil {
			return 0, err
		}
		if i := bytes.Index(b, []byte{0x0f, 0x05}); i >= 0 {
			return m.Start + uint64(i), nil
		}
	}
	return 0, fmt.Errorf("pid %d: no syscall instruction found (no vdso)", p.pid)
}

// injectSyscall makes the stopped thread th execute the system call nr
// with args at the syscall instruction sys, by single-stepping it once, and
// restores th's registers. Signals that arrive meanwhile are kept in th.sigs
// for its next resume. If th dies, th.dead is set and ESRCH returned.
// Preconditions: on the tracer thread; th is stopped, not in a system call.
func (w *World) injectSyscall(th *thread, sys uint64, nr uint64, args ...uint64) (uint64, error) {
	var saved, regs install.Regs
	if err := ptraceGetRegs(th.tid, &saved); err != nil {
		return 0, fmt.Errorf("inject: getregs: %w", err)
	}
	regs = saved
	regs.Rip = sys
	regs.Rax = nr
	regs.OrigRax = ^uint64(0)
	a := append(args, 0, 0, 0, 0, 0, 0)
	regs.Rdi, regs.Rsi, regs.Rdx, regs.R10, regs.R8, regs.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	if err := ptraceSetRegs(th.tid, &regs); err != nil {
		return 0, fmt.Errorf("inject: setregs: %w", err)
	}
	done := false
	for tries := 0; tries < 1000 && !done; tries++ {
		if err := ptraceSingleStep(th.tid, 0); err != nil {
			return 0, fmt.Errorf("inject: singlestep: %w", err)
		}
		var st unix.WaitStatus
		for {
			_, err := wait4(th.tid, &st, false)
			if err != unix.EINTR {
				break
			}
		}
		switch {
		case st.Exited() || st.Signaled():
			th.dead = true
			return 0, fmt.Errorf("inject: tid %d: %w", th.tid, syscall.ESRCH)
		case !st.Stopped():
			continue
		}
		sig := int(st.StopSignal())
		ev := int(st) >> 16
		switch {
		case ev == 0 && sig == int(unix.SIGTRAP):
			rip, err := ptracePeekRip(th.tid)
			if err == nil && rip == sys+2 {
				done = true
			}
		case ev == 0:
			th.sigs = append(th.sigs, sig) // delivered at the next resume
		default:
			// An interrupt or group-stop trap: step on.
		}
	}
	if !done {
		ptraceSetRegs(th.tid, &saved)
		return 0, fmt.Errorf("inject: tid %d did not complete the system call", th.tid)
	}
	if err := ptraceGetRegs(th.tid, &regs); err != nil {
		return 0, fmt.Errorf("inject: getregs: %w", err)
	}
	if err := ptraceSetRegs(th.tid, &saved); err != nil {
		return 0, fmt.Errorf("inject: restore regs: %w", err)
	}
	return regs.Rax, nil
}
