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
// head of a slot page, or one found in the vdso. ms is p's maps, or nil
// to read them here.
func (w *World) syscallInsn(p *process, ms []procfs.Mapping) (uint64, error) {
	if len(p.xol.pages) > 0 {
		return p.xol.pages[0].addr, nil
	}
	if ms == nil {
		var err error
		if ms, err = p.readMaps(); err != nil {
			return 0, err
		}
	}
	for _, m := range ms {
		if m.Path != "[vdso]" || !m.Exec() {
			continue
		}
		// Every process of this kernel maps the same vdso image: the
		// offset found once is checked (two bytes) instead of reading
		// the whole vdso again.
		if off := w.vdsoSys.Load(); off != 0 && m.Start+off+2 <= m.End {
			var b [2]byte
			if p.as.ReadMemory(m.Start+off, b[:]) == nil && b == [2]byte{0x0f, 0x05} {
				return m.Start + off, nil
			}
		}
		b := make([]byte, m.End-m.Start)
		if err := p.as.ReadMemory(m.Start, b); err != nil {
			return 0, err
		}
		if i := bytes.Index(b, []byte{0x0f, 0x05}); i >= 0 {
			w.vdsoSys.Store(uint64(i))
			return m.Start + uint64(i), nil
		}
	}
	return 0, fmt.Errorf("pid %d: no syscall instruction found (no vdso)", p.pid)
}

// injectSyscall makes the stopped thread th execute the system call nr
// with args at the syscall instruction sys, and restores th's registers.
// The thread runs to the system call with PTRACE_SYSCALL and is held at its
// entry and exit stops: no trap, so no forced SIGTRAP (a single-step's
// would reset a SIGTRAP handler or SIG_IGN while SIGTRAP is blocked or
// ignored, as a hit's does; see sigtrap.go). Every signal is blocked
// meanwhile (PTRACE_SETSIGMASK), and the thread's own mask put back after:
// signals that arrive stay pending and reach the program as they would have
// (a stream of them, a timer's, no longer keeps the thread from ever
// reaching the system call). Any that still stops it is kept in th.sigs
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
	regs.OrigRax = ^uint64(0) // not in a system call: no restart of one
	a := append(args, 0, 0, 0, 0, 0, 0)
	regs.Rdi, regs.Rsi, regs.Rdx, regs.R10, regs.R8, regs.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	var mask uint64
	if err := ptraceGetSigmask(th.tid, &mask); err != nil {
		return 0, fmt.Errorf("inject: get signal mask: %w", err)
	}
	if err := ptraceSetSigmask(th.tid, ^uint64(0)); err != nil {
		return 0, fmt.Errorf("inject: block signals: %w", err)
	}
	defer ptraceSetSigmask(th.tid, mask)
	if err := ptraceSetRegs(th.tid, &regs); err != nil {
		return 0, fmt.Errorf("inject: setregs: %w", err)
	}
	entered, done := false, false
	for tries := 0; tries < 1000 && !done; tries++ {
		if err := ptraceSyscall(th.tid, 0); err != nil {
			return 0, fmt.Errorf("inject: resume: %w", err)
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
		case ev == 0 && sig == int(unix.SIGTRAP)|0x80: // a syscall stop
			if !entered {
				var r install.Regs
				if ptraceGetRegs(th.tid, &r) == nil && r.OrigRax == nr && r.Rip == sys+2 {
					entered = true
				}
				continue
			}
			done = true
		case ev == 0:
			th.sigs = append(th.sigs, sig) // delivered at the next resume
		default:
			// An interrupt or group-stop trap: go on.
		}
	}
	if !done {
		ptraceSetRegs(th.tid, &saved)
		return 0, fmt.Errorf("inject: tid %d did not complete the system call", th.tid)
	}
	if err := ptraceGetRegs(th.tid, &regs); err != nil {
		return 0, fmt.Errorf("inject: getregs: %w", err)
	}
	restartable(&saved)
	if err := ptraceSetRegs(th.tid, &saved); err != nil {
		return 0, fmt.Errorf("inject: restore regs: %w", err)
	}
	return regs.Rax, nil
}

// Errors a system call interrupted by a stop returns for the kernel to
// restart it (include/linux/errno.h).
const (
	erestartSys          = 512
	erestartNoIntr       = 513
	erestartNoHand       = 514
	erestartRestartBlock = 516
)

// restartable turns the registers of a thread stopped inside an
// interrupted system call (orig_rax >= 0, rax one of the -ERESTART*
// values) into those of its restart: rip back on the syscall instruction,
// rax the call again (restart_syscall for ERESTART_RESTARTBLOCK). The
// kernel does that itself when the thread resumes from the stop with a
// signal pending, and not otherwise; after an injected system call the
// thread resumes from that call's exit stop, where nothing is pending, and
// would return -ERESTARTSYS to the program (seen: a read(2) failing after
// an injection at an interrupt stop).
func restartable(r *install.Regs) {
	if int64(r.OrigRax) < 0 {
		return
	}
	switch -int64(r.Rax) {
	case erestartSys, erestartNoIntr, erestartNoHand:
		r.Rax = r.OrigRax
		r.Rip -= 2
	case erestartRestartBlock:
		r.Rax = unix.SYS_RESTART_SYSCALL
		r.Rip -= 2
	}
}
