package proc

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
)

// CET shadow stacks. A thread with a user shadow stack (x86_Thread_features:
// shstk in /proc/PID/task/TID/status) keeps a second stack of return
// addresses that only call and ret change; the tracer's emulation of a call
// or ret changes the ordinary stack alone, and the thread's next native ret
// would die of a control-protection fault. In such a thread call and ret
// are never emulated: they run for real in a branch slot
// (install.BranchSlotCode).

// ntX86Shstk is the NT_X86_SHSTK regset: the shadow stack pointer, readable
// only while the thread's shadow stack is enabled (ENODEV otherwise).
const ntX86Shstk = 0x204

// Shadow-stack state of a thread, cached in thread.shstk.
const (
	shstkUnknown = iota
	shstkOff
	shstkOn
)

// shadowStack reports whether th runs with a shadow stack. It asks the
// kernel once per thread and image (exec resets it).
func (w *World) shadowStack(th *thread) bool {
	if w.opts.ForceShadowStack {
		return true
	}
	if th.shstk == shstkUnknown {
		th.shstk = shstkOff
		var ssp uint64
		iov := unix.Iovec{Base: (*byte)(unsafe.Pointer(&ssp)), Len: 8}
		if ptracePtr(unix.PTRACE_GETREGSET, th.tid, ntX86Shstk, unsafe.Pointer(&iov)) == nil {
			th.shstk = shstkOn
		}
	}
	return th.shstk == shstkOn
}

// branchSlotFor returns the branch slot running plan's call or ret at addr
// for real, writing it on first use.
// Preconditions: on the tracer thread; th is stopped.
func (w *World) branchSlotFor(th *thread, addr uint64, plan *install.Plan) (uint64, error) {
	x := &th.proc.xol
	if s, ok := x.branches[addr]; ok && s.plan == plan {
		return s.addr, nil
	}
	slot, code, err := w.allocSlot(th, addr, func(a uint64) ([]byte, error) { return plan.BranchSlotCode(addr, a) })
	if err != nil {
		return 0, fmt.Errorf("branch slot (shadow stack): %w", err)
	}
	if x.branches == nil {
		x.branches = map[uint64]xolSlot{}
	}
	x.branches[addr] = xolSlot{addr: slot, plan: plan, code: code}
	x.noteSlot(slot, addr, plan, false)
	return slot, nil
}
