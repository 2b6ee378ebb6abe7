package proc

import (
	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
)

// Following a thread's system calls, briefly: PTRACE_SYSCALL for one
// thread, only while the world needs to see what it does, then PTRACE_CONT
// again. Two things are followed (thread.follow):
//
//   - followSigaction: after a hit on a sigaction hook (sigaction.go), the
//     rt_sigaction(SIGTRAP, act, ...) the call makes: its act is the
//     disposition to keep.
//   - followMmap: after the thread opened a watched file (a fanotify
//     FAN_OPEN_PERM event: a library about to be mapped), its mmap and
//     mprotect calls with PROT_EXEC: at their exit the maps are read again
//     (syncMappings), so a file mapped with a plain mmap, not through the
//     loader (whose r_brk announces dlopen), has its breakpoints before the
//     call returns and its code can run. Followed until the watched file is
//     mapped executable, or for mmapFollowCalls system calls at most (then
//     the expect window's end reads the maps once more).
//
// A syscall stop (SIGTRAP|0x80, PTRACE_O_TRACESYSGOOD) is an entry when
// rax is -ENOSYS (the kernel sets it before the entry stop), an exit
// otherwise.

// What a thread's system calls are followed for (thread.follow).
const (
	followSigaction = 1 << iota
	followMmap
)

// mmapFollowCalls is how many system calls of a thread that opened a
// watched file are followed at most.
const mmapFollowCalls = 64

// followMaps makes th's next system calls followed for mmaps of a watched
// file (th opened one). Preconditions: on the tracer thread.
func (w *World) followMaps(th *thread) {
	th.follow |= followMmap
	th.mapLeft = mmapFollowCalls
	if th.state == running {
		// Resumed with PTRACE_CONT: stop it so that its next resume is a
		// PTRACE_SYSCALL (it stops once its current call, the open, is
		// done).
		ptraceInterrupt(th.tid)
	}
}

// syscallStop handles a syscall stop of th. Preconditions: on the tracer
// thread; th is stopped.
func (w *World) syscallStop(th *thread) {
	var regs install.Regs
	if th.proc == nil || ptraceGetRegs(th.tid, &regs) != nil {
		th.follow = 0
		w.resume(th, 0)
		return
	}
	if int64(regs.Rax) == -int64(unix.ENOSYS) {
		w.syscallEntry(th, &regs)
	} else {
		w.syscallExit(th, &regs)
	}
	if th.proc != nil && !th.proc.gone && th.state == stopped {
		w.resume(th, 0)
	}
}

func (w *World) syscallEntry(th *thread, regs *install.Regs) {
	th.newAct, th.mapCall = nil, false
	switch nr := regs.OrigRax; {
	case th.follow&followSigaction != 0 && nr == unix.SYS_RT_SIGACTION && regs.Rdi == uint64(unix.SIGTRAP) && regs.Rsi != 0:
		var act [32]byte
		if th.proc.as.ReadMemory(regs.Rsi, act[:]) == nil {
			th.newAct = &act
		}
	case th.follow&followMmap != 0 && regs.Rdx&unix.PROT_EXEC != 0 &&
		(nr == unix.SYS_MMAP && int64(regs.R8) >= 0 || nr == unix.SYS_MPROTECT):
		th.mapCall = true
	}
}

func (w *World) syscallExit(th *thread, regs *install.Regs) {
	p := th.proc
	ok := int64(regs.Rax) >= 0 || int64(regs.Rax) < -4095
	if th.follow&followSigaction != 0 {
		if act := th.newAct; act != nil && regs.OrigRax == unix.SYS_RT_SIGACTION && regs.Rax == 0 {
			p.setTrapDisp(th.tgid, act)
		}
		if th.sigLeft--; regs.OrigRax == unix.SYS_RT_SIGACTION || th.sigLeft <= 0 {
			th.follow &^= followSigaction
		}
	}
	th.newAct = nil
	if th.follow&followMmap != 0 {
		if th.mapCall && ok {
			if err := w.syncMappings(p); err != nil {
				w.errorf("pid %d: maps after an mmap: %v", p.pid, err)
			}
			if w.hasWatched(p) {
				th.follow &^= followMmap // the watched file is mapped, with its breakpoints
			}
		}
		if th.mapLeft--; th.mapLeft <= 0 {
			th.follow &^= followMmap
		}
	}
	th.mapCall = false
}
