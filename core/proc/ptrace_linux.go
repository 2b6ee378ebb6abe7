package proc

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
)

// Thin wrappers, one per ptrace request. Every one of them must be called on
// the tracer thread (see tracer.go): the kernel binds a tracee to the thread
// that attached it. They use RawSyscall: none of these requests blocks.

// seizeOptions are the options every tracee gets: clone, fork, vfork, exec
// and exit events. Never PTRACE_O_EXITKILL: if the tracer dies, its tracees
// must live on.
const seizeOptions = unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEFORK | unix.PTRACE_O_TRACEVFORK |
	unix.PTRACE_O_TRACEEXEC | unix.PTRACE_O_TRACEEXIT | unix.PTRACE_O_TRACESYSGOOD

func ptrace(req int, tid int, addr, data uintptr) error {
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// ptracePtr is ptrace for requests whose data is a pointer. The pointer
// stays an unsafe.Pointer up to the system call: converted to a uintptr
// any earlier (in a caller's argument list), it no longer follows its
// object when the goroutine's stack moves, and the kernel writes into the
// old stack (PTRACE_PEEKDATA read zeros so, and a poke wrote them back).
func ptracePtr(req int, tid int, addr uintptr, data unsafe.Pointer) error {
	_, _, e := unix.RawSyscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, uintptr(data), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// ptraceSeize attaches to the thread tid without stopping it
// (PTRACE_SEIZE), with seizeOptions.
func ptraceSeize(tid int) error {
	return ptrace(unix.PTRACE_SEIZE, tid, 0, seizeOptions)
}

// ptraceInterrupt asks a seized thread to stop (PTRACE_INTERRUPT); it
// reports a PTRACE_EVENT_STOP unless another stop comes first.
func ptraceInterrupt(tid int) error { return ptrace(unix.PTRACE_INTERRUPT, tid, 0, 0) }

// ptraceCont resumes a stopped thread, delivering sig if not 0 (PTRACE_CONT).
func ptraceCont(tid, sig int) error { return ptrace(unix.PTRACE_CONT, tid, 0, uintptr(sig)) }

// ptraceSyscall resumes a stopped thread until its next system call entry
// or exit (PTRACE_SYSCALL), delivering sig if not 0. Only used to follow
// one rt_sigaction of one thread (sigaction.go).
func ptraceSyscall(tid, sig int) error { return ptrace(unix.PTRACE_SYSCALL, tid, 0, uintptr(sig)) }

// ptraceListen lets a thread in group-stop stay stopped while still
// reporting SIGCONT and other events (PTRACE_LISTEN).
func ptraceListen(tid int) error { return ptrace(unix.PTRACE_LISTEN, tid, 0, 0) }

// ptraceDetach detaches a stopped thread, delivering sig if not 0
// (PTRACE_DETACH).
func ptraceDetach(tid, sig int) error { return ptrace(unix.PTRACE_DETACH, tid, 0, uintptr(sig)) }

// ptraceGetRegs reads the general-purpose registers (PTRACE_GETREGS).
func ptraceGetRegs(tid int, r *install.Regs) error {
	return ptracePtr(unix.PTRACE_GETREGS, tid, 0, unsafe.Pointer(r))
}

// ptraceSetRegs writes the general-purpose registers (PTRACE_SETREGS).
func ptraceSetRegs(tid int, r *install.Regs) error {
	return ptracePtr(unix.PTRACE_SETREGS, tid, 0, unsafe.Pointer(r))
}

// offRip is the offset of rip in struct user_regs_struct, for
// PTRACE_PEEKUSER and PTRACE_POKEUSER.
var offRip = uintptr(unsafe.Offsetof(install.Regs{}.Rip))

// ptracePeekRip reads rip alone (PTRACE_PEEKUSER): cheaper than GETREGS.
func ptracePeekRip(tid int) (uint64, error) {
	var v uint64
	// PTRACE_PEEKUSER at the raw syscall level stores the word at data.
	err := ptracePtr(unix.PTRACE_PEEKUSR, tid, offRip, unsafe.Pointer(&v))
	return v, err
}

// ptracePokeRip writes rip alone (PTRACE_POKEUSER).
// offRsp is the offset of rsp in struct user_regs_struct.
var offRsp = uintptr(unsafe.Offsetof(install.Regs{}.Rsp))

// ptracePeekUser reads the register at offset off of a stopped thread's
// struct user_regs_struct (PTRACE_PEEKUSER).
func ptracePeekUser(tid int, off uintptr) (uint64, error) {
	var v uint64
	err := ptracePtr(unix.PTRACE_PEEKUSR, tid, off, unsafe.Pointer(&v))
	return v, err
}

func ptracePokeRip(tid int, rip uint64) error {
	return ptrace(unix.PTRACE_POKEUSR, tid, offRip, uintptr(rip))
}

// ptraceGetEventMsg returns the message of the last PTRACE_EVENT stop
// (PTRACE_GETEVENTMSG): the new tid for clone/fork/vfork, the former tid
// for exec.
func ptraceGetEventMsg(tid int) (uint64, error) {
	var v uint64
	err := ptracePtr(unix.PTRACE_GETEVENTMSG, tid, 0, unsafe.Pointer(&v))
	return v, err
}

// siginfo is the kernel's siginfo_t (128 bytes) with the accessors we need.
type siginfo [128]byte

func (s *siginfo) signo() int32 { return int32(binary.LittleEndian.Uint32(s[0:])) }
func (s *siginfo) code() int32  { return int32(binary.LittleEndian.Uint32(s[8:])) }

// pid is si_pid (SIGCHLD and waitid, kill).
func (s *siginfo) pid() int32 { return int32(binary.LittleEndian.Uint32(s[16:])) }

// status is si_status (waitid).
func (s *siginfo) status() int32 { return int32(binary.LittleEndian.Uint32(s[24:])) }

// ptraceGetSiginfo reads the siginfo of the signal a thread is stopped for
// (PTRACE_GETSIGINFO). It fails with EINVAL in a group-stop.
func ptraceGetSiginfo(tid int, si *siginfo) error {
	return ptracePtr(unix.PTRACE_GETSIGINFO, tid, 0, unsafe.Pointer(si))
}

// ptraceSetSiginfo replaces the siginfo of the signal a thread is stopped
// for (PTRACE_SETSIGINFO): resumed with the same signal number, the thread
// gets this siginfo.
func ptraceSetSiginfo(tid int, si *siginfo) error {
	return ptracePtr(unix.PTRACE_SETSIGINFO, tid, 0, unsafe.Pointer(si))
}

// ptraceSingleStep resumes a thread for one instruction, with signal sig.
func ptraceSingleStep(tid, sig int) error {
	return ptrace(unix.PTRACE_SINGLESTEP, tid, 0, uintptr(sig))
}

// ptracePokeData writes one word at addr of a stopped thread's address
// space (PTRACE_POKEDATA). It is the fallback when /proc/PID/mem refuses
// writes to text.
func ptracePokeData(tid int, addr uintptr, word uint64) error {
	return ptrace(unix.PTRACE_POKEDATA, tid, addr, uintptr(word))
}

// ptracePeekData reads one word at addr (PTRACE_PEEKDATA).
func ptracePeekData(tid int, addr uintptr) (uint64, error) {
	var v uint64
	err := ptracePtr(unix.PTRACE_PEEKDATA, tid, addr, unsafe.Pointer(&v))
	return v, err
}

// Values of si_code for SIGTRAP.
const (
	siKernel   = 0x80 // SI_KERNEL: int3
	trapBrkpt  = 1    // TRAP_BRKPT
	trapTrace  = 2    // TRAP_TRACE: single-step
	trapHwbkpt = 4    // TRAP_HWBKPT: a hardware breakpoint
)

// waitid peeks (WNOWAIT) at the next event of a child or tracee of the
// calling thread only (__WNOTHREAD), blocking unless nohang. It returns the
// pid and the siginfo; pid 0 with nohang means nothing is ready.
func waitidPeek(si *siginfo, nohang bool) (int, error) {
	opts := unix.WEXITED | unix.WSTOPPED | unix.WNOWAIT | unix.WALL | unix.WNOTHREAD
	if nohang {
		opts |= unix.WNOHANG
	}
	*si = siginfo{}
	_, _, e := unix.Syscall6(unix.SYS_WAITID, unix.P_ALL, 0, uintptr(unsafe.Pointer(si)), uintptr(opts), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(si.pid()), nil
}

// wait4 reaps the next event of the thread tid, a tracee or child of the
// calling thread (__WNOTHREAD), blocking unless nohang. It returns 0 with
// nohang if nothing is ready.
func wait4(tid int, st *unix.WaitStatus, nohang bool) (int, error) {
	opts := unix.WALL | unix.WNOTHREAD | unix.WUNTRACED
	if nohang {
		opts |= unix.WNOHANG
	}
	var r uintptr
	var e unix.Errno
	if nohang {
		r, _, e = unix.RawSyscall6(unix.SYS_WAIT4, uintptr(tid), uintptr(unsafe.Pointer(st)), uintptr(opts), 0, 0, 0)
	} else {
		r, _, e = unix.Syscall6(unix.SYS_WAIT4, uintptr(tid), uintptr(unsafe.Pointer(st)), uintptr(opts), 0, 0, 0)
	}
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// ptraceGetSigmask reads th's blocked-signal mask (PTRACE_GETSIGMASK).
func ptraceGetSigmask(tid int, mask *uint64) error {
	return ptracePtr(unix.PTRACE_GETSIGMASK, tid, 8, unsafe.Pointer(mask))
}

// ptraceSetSigmask sets th's blocked-signal mask (PTRACE_SETSIGMASK).
func ptraceSetSigmask(tid int, mask uint64) error {
	return ptracePtr(unix.PTRACE_SETSIGMASK, tid, 8, unsafe.Pointer(&mask))
}

// The debug registers in struct user (u_debugreg): DR0, and DR7 whose bit 0
// (L0) enables DR0 as an execute breakpoint (RW0 = LEN0 = 0).
const (
	userDR0 = 848
	userDR7 = userDR0 + 7*8
)

// ptraceHwBreak sets (addr != 0) or clears an execute breakpoint of tid in
// DR0.
func ptraceHwBreak(tid int, addr uint64) error {
	if addr == 0 {
		return ptrace(unix.PTRACE_POKEUSR, tid, userDR7, 0)
	}
	if err := ptrace(unix.PTRACE_POKEUSR, tid, userDR0, uintptr(addr)); err != nil {
		return err
	}
	return ptrace(unix.PTRACE_POKEUSR, tid, userDR7, 1)
}
