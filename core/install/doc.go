// Package install is the arch part of the seed: what an x86-64 instruction
// at a probed place is, and how to put a breakpoint there and step over it
// (the kernel's arch/x86/kernel/uprobes.c and the verify-opcode breakpoint
// writer of kernel/events/uprobes.c). It works on instruction bytes and
// register files, never on files or processes: core/objfile reads the bytes
// from the probed file, core/proc applies the plans to real threads.
//
// It owns, one concern a file:
//
//   - plan.go: instruction analysis with x86asm (AnalyzeBytes): refuse
//     what the kernel's uprobes refuse and choose the step-over Plan.
//   - emulate.go, slot.go: the two step-over kinds. Emulate applies the
//     instruction's effect to a Regs (nop/endbr64, push reg, mov reg,reg,
//     lea, add/sub rsp,imm, jmp, call, jcc, loop/jrcxz, ret, and indirect
//     jmp/call through a register or memory) so a hit costs one trap.
//     SlotCode relocates every other instruction into an out-of-line slot
//     (RIP-relative displacement rewritten, then an absolute jump back) so
//     a hit also costs one trap and never a single-step.
//   - regs.go: Regs, the register file in the kernel's user_regs_struct
//     layout, and the operand helpers.
//   - breakpoint.go: InsertBreakpoint/RemoveBreakpoint, one byte, with the
//     kernel's verify-opcode semantics, on any Memory.
//   - jump.go, tramp.go: jump sites (trap-free probes). AnalyzeJump decides
//     whether the whole instructions covering 5 bytes at a probe can be
//     displaced (the relocation rules of the kernel's optprobes, stricter
//     where unsure); JumpPlan.Trampoline writes the code that counts a hit
//     (lock incq below the red zone, flags saved) and runs them relocated
//     (rip-relative operands rewritten, branches to absolute targets, a
//     call as a push of the original return address); JumpInsn is the
//     jmp rel32 at the site. core/objfile adds the rules that need the
//     file (JumpAt).
//
// It imports only the standard library, golang.org/x/arch/x86/x86asm and
// core/rmap (whose AddressSpace is the Memory breakpoints are written to):
// core/probes embeds its Plan in every uprobe, so it must stay free of os,
// /proc and golang.org/x/sys/unix. There are no locks: Plan is immutable
// after construction and safe for concurrent use. Errors wrap one of the
// sentinel errors of api.go.
package install
