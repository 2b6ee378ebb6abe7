// Package install knows what sits at a probed place in an x86-64 ELF file and
// how to put a breakpoint there: it is the arch part of the seed (the
// kernel's arch/x86/kernel/uprobes.c and the verify-opcode breakpoint writer
// of kernel/events/uprobes.c).
//
// It owns four things, one file each:
//
//   - elf.go: probe locations. Open an ELF file (PIE, non-PIE, shared
//     object; stripped or not), Resolve "0x4a0", "1184", "sym", "sym+0x10"
//     to a file offset (offset = st_value - PT_LOAD.Vaddr + PT_LOAD.Off of
//     the executable segment holding the symbol), Symbolize an offset back.
//   - plan.go: instruction analysis with x86asm on the bytes read from the
//     FILE (never from a process): refuse what the kernel's uprobes refuse,
//     refuse offsets that are not instruction boundaries of the enclosing
//     function, and choose the step-over Plan.
//   - emulate.go, slot.go: the two step-over kinds. Emulate applies the
//     instruction's effect to the registers (nop/endbr64, push reg, mov
//     reg,reg, lea, add/sub rsp,imm, jmp, call, jcc, loop/jrcxz, ret, and
//     indirect jmp/call through a register or memory) so a hit costs one
//     trap. SlotCode relocates every other instruction into an out-of-line
//     slot (RIP-relative displacement rewritten, then an absolute jump back)
//     so a hit also costs one trap and never a single-step.
//   - breakpoint.go: InsertBreakpoint/RemoveBreakpoint, one byte, with the
//     kernel's verify-opcode semantics.
//
// There are no locks: File and Plan are immutable after construction and safe
// for concurrent use. Errors wrap one of the sentinel errors of api.go.
package install
