package proc

import (
	"encoding/binary"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
)

// Return probes (the kernel's uretprobes). At a hit of a uprobe with return
// consumers — at a function's first instruction, where [rsp] is the return
// address — the tracer replaces the return address with the address of the
// process's return trampoline (an int3 in its XOL page) and pushes a
// return instance on the thread's return stack (prepare_uretprobe). When
// the function returns, the thread traps on the trampoline: the tracer
// pops the instance, dispatches the return (rax is the return value), and
// sends the thread on to the original return address (handle_trampoline).
//
//   - Frames left without returning (longjmp, an exception unwound through
//     them) leave instances whose stack slot is below the stack pointer:
//     dropped at the next entry or return of the thread, as the kernel's
//     cleanup_return_instances and handle_trampoline do.
//   - A tail call into another probed function finds the trampoline as its
//     return address already: its instance takes the original (chained) and
//     both are dispatched at the one return.
//   - At most maxRetDepth pending returns per thread; deeper entries are
//     not hijacked (their returns are missed, counted in the errors).
//   - A fork child inherits its parent's stack, so its return stack too.
//   - Before a thread is detached, every return address of its live
//     instances is put back on its stack: untraced, it never reaches the
//     trampoline.
//   - Never in a Go program (its runtime copies and walks stacks): the
//     manager refuses return probes there.

// maxRetDepth is the kernel's MAX_URETPROBE_DEPTH.
const maxRetDepth = 64

// retInst is one pending return of a thread.
type retInst struct {
	u     *probes.Uprobe
	fn    uint64 // the function's entry (the probe's vaddr)
	orig  uint64 // the return address it replaced
	sp    uint64 // the stack slot of the return address (rsp at the entry)
	entry int64  // unix ns
	// chained: entered by a tail call from a probed function, whose
	// instance (below it) shares its return.
	chained bool
}

// trampCode is the return trampoline's slot: int3, then a tag (never run).
var trampCode = []byte{install.BreakpointInsn, 'u', 'r', 'e', 't'}

// trampoline returns the address of p's return trampoline, written on
// first use. Preconditions: on the tracer thread; th is stopped.
func (w *World) trampoline(th *thread, near uint64) (uint64, error) {
	x := &th.proc.xol
	if x.tramp == 0 {
		slot, _, err := w.allocSlot(th, near, func(uint64) ([]byte, error) { return trampCode, nil })
		if err != nil {
			return 0, err
		}
		x.tramp = slot
	}
	return x.tramp, nil
}

// hijack prepares the return of the function at fn that th just entered
// (its uprobe u has return consumers). Preconditions: on the tracer
// thread; th is stopped at the hit, before the step-over.
func (w *World) hijack(th *thread, u *probes.Uprobe, fn uint64, entry int64) {
	sp, err := ptracePeekUser(th.tid, offRsp)
	if err != nil {
		return
	}
	if len(th.rets) >= maxRetDepth {
		w.errorf("tid %d: more than %d nested returns pending at %#x: this return is not probed", th.tid, maxRetDepth, fn)
		return
	}
	tramp, err := w.trampoline(th, fn)
	if err != nil {
		w.errorf("tid %d: no return trampoline: %v", th.tid, err)
		return
	}
	mem := userMem{th.tgid}
	var b [8]byte
	if mem.ReadMemory(sp, b[:]) != nil {
		return
	}
	orig := binary.LittleEndian.Uint64(b[:])
	chained := orig == tramp
	if chained {
		// A tail call from another probed function: the same
		// return, and the same original address.
		if len(th.rets) == 0 {
			return
		}
		orig = th.rets[len(th.rets)-1].orig
	} else {
		// Frames left without returning (longjmp): an instance is
		// alive only while its slot is above the stack pointer (the
		// kernel's arch_uretprobe_is_alive, RP_CHECK_CALL).
		for len(th.rets) > 0 && th.rets[len(th.rets)-1].sp <= sp {
			th.rets = th.rets[:len(th.rets)-1]
		}
		binary.LittleEndian.PutUint64(b[:], tramp)
		if mem.WriteMemory(sp, b[:]) != nil {
			return
		}
	}
	th.rets = append(th.rets, retInst{u: u, fn: fn, orig: orig, sp: sp, entry: entry, chained: chained})
}

// isTramp reports whether addr is th's process's return trampoline.
func isTramp(th *thread, addr uint64) bool {
	return th.proc != nil && th.proc.xol.tramp != 0 && addr == th.proc.xol.tramp
}

// retHit handles th's trap on the return trampoline: the returns are
// dispatched and th goes on at the original return address. It reports
// false if th has no instance for it (it cannot go on).
func (w *World) retHit(th *thread, dispatch bool) bool {
	var regs install.Regs
	if err := ptraceGetRegs(th.tid, &regs); err != nil {
		return false
	}
	// As the kernel's handle_trampoline: the top instance and those it
	// is chained to are this return, if the instance below them (the
	// caller's) is still alive (its slot at or above the stack pointer);
	// else they were left by a longjmp and are dropped undispatched, and
	// the next group is tried.
	now := time.Now().UnixNano()
	for {
		n := len(th.rets)
		if n == 0 {
			w.errorf("tid %d: on the return trampoline without a pending return (rsp %#x)", th.tid, regs.Rsp)
			return false
		}
		j := n - 1
		for j > 0 && th.rets[j].chained {
			j--
		}
		valid := j == 0 || regs.Rsp <= th.rets[j-1].sp
		regs.Rip = th.rets[j].orig
		for k := n - 1; k >= j && valid && dispatch; k-- { // innermost first
			ri := th.rets[k]
			w.nHits.Add(1)
			w.eng.DispatchReturn(ri.u, probes.Return{
				Hit:   probes.Hit{Pid: th.tgid, Tid: th.tid, Vaddr: ri.fn, Time: now, Regs: &regs, Mem: userMem{th.tgid}},
				Ret:   ri.orig,
				Entry: ri.entry,
			})
		}
		th.rets = th.rets[:j]
		if valid {
			break
		}
	}
	return ptraceSetRegs(th.tid, &regs) == nil
}

// trampHit is the trap path of the trampoline.
func (w *World) trampHit(th *thread) {
	if !w.keepSigTrap(th) {
		return // th is gone
	}
	if !w.retHit(th, true) {
		// Nowhere to return to: what the program would get from a
		// return into an unmapped page.
		w.resume(th, int(unix.SIGSEGV))
		return
	}
	w.resume(th, 0)
}

// unhijack puts the original return addresses of th's live instances back
// on its stack, before th is detached. Preconditions: th is stopped.
func (w *World) unhijack(th *thread) {
	if len(th.rets) == 0 || th.proc == nil {
		return
	}
	sp, err := ptracePeekUser(th.tid, offRsp)
	if err == nil {
		tramp := th.proc.xol.tramp
		mem := userMem{th.tgid}
		for _, ri := range slices.Backward(th.rets) {
			if ri.sp < sp {
				continue // a frame gone without returning
			}
			var b [8]byte
			if mem.ReadMemory(ri.sp, b[:]) == nil && binary.LittleEndian.Uint64(b[:]) == tramp {
				binary.LittleEndian.PutUint64(b[:], ri.orig)
				if err := mem.WriteMemory(ri.sp, b[:]); err != nil {
					w.errorf("tid %d: put back the return address at %#x: %v", th.tid, ri.sp, err)
				}
			}
		}
	}
	th.rets = nil
}
