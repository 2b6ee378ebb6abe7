package install

import (
	"bytes"
	"fmt"
	"syscall"

	"github.com/uprobefs/uprobefs/core/rmap"
)

// Memory is how this package reads and writes a traced address space: the
// engine's rmap.AddressSpace (errors wrap syscall.ESRCH when the address
// space is gone, syscall.EFAULT when vaddr is not mapped; they are passed
// through wrapped).
type Memory = rmap.AddressSpace

// BreakpointInsn is the x86 breakpoint instruction, int3.
const BreakpointInsn = 0xCC

// maxCheck bounds how many bytes of an instruction are compared.
const maxCheck = MaxInsnLen

// InsertBreakpoint writes int3 at vaddr with the kernel's verify-opcode
// semantics, on every byte of the instruction: insn is the instruction's
// bytes as found in the FILE (at least its first byte). If memory holds
// insn at vaddr it writes 0xCC over its first byte; if it holds int3
// followed by the rest of insn the breakpoint is there already: it writes
// nothing and returns an error wrapping syscall.EEXIST (callers count it as
// present); anything else (the memory does not hold the file's code: a
// one-byte compare would take a 0x48 prefix of another instruction for
// ours) writes nothing and returns an error wrapping syscall.EINVAL. Errors
// of mem are returned wrapped. It never writes more than one byte. insn[0]
// == 0xCC is refused with EINVAL.
func InsertBreakpoint(mem Memory, vaddr uint64, insn []byte) error {
	if len(insn) == 0 || insn[0] == BreakpointInsn {
		return fmt.Errorf("install breakpoint at %#x: original instruction is empty or int3: %w", vaddr, syscall.EINVAL)
	}
	return verifyWrite(mem, vaddr, insn, true)
}

// RemoveBreakpoint restores insn[0] at vaddr if and only if memory holds
// int3 followed by the rest of insn there (verify-opcode). If it holds insn
// itself there is no breakpoint to remove: it writes nothing and returns
// nil, as the kernel does. Anything else writes nothing and returns an
// error wrapping syscall.EINVAL (the memory does not hold the file's code).
// Errors of mem are returned wrapped. It never writes more than one byte.
func RemoveBreakpoint(mem Memory, vaddr uint64, insn []byte) error {
	if len(insn) == 0 {
		return fmt.Errorf("remove breakpoint at %#x: empty instruction: %w", vaddr, syscall.EINVAL)
	}
	return verifyWrite(mem, vaddr, insn, false)
}

// verifyWrite is the verify-opcode write of both: it reads the first bytes
// of insn (at most maxCheck) at vaddr. If they hold the state it leaves
// (set: insn; !set: int3 then the rest of insn) it writes the one byte of
// the other (int3, or insn[0]); if they hold that other state already it
// writes nothing (set: EEXIST; !set: nil); anything else is EINVAL.
func verifyWrite(mem Memory, vaddr uint64, insn []byte, set bool) error {
	op, c, want := "remove", insn[0], "int3 then "
	if set {
		op, c, want = "install", BreakpointInsn, ""
	}
	insn = insn[:min(len(insn), maxCheck)]
	b := make([]byte, len(insn))
	if err := mem.ReadMemory(vaddr, b); err != nil {
		return fmt.Errorf("%s breakpoint at %#x: read: %w", op, vaddr, err)
	}
	orig := bytes.Equal(b, insn)
	int3 := b[0] == BreakpointInsn && bytes.Equal(b[1:], insn[1:])
	switch {
	case set && int3:
		return fmt.Errorf("install breakpoint at %#x: int3 already there: %w", vaddr, syscall.EEXIST)
	case !set && orig:
		return nil
	case !orig && !int3:
		rest := insn
		if !set {
			rest = insn[1:]
		}
		return fmt.Errorf("%s breakpoint at %#x: found [% x], want %s[% x] (memory does not hold the file's code): %w",
			op, vaddr, b, want, rest, syscall.EINVAL)
	}
	if err := mem.WriteMemory(vaddr, []byte{c}); err != nil {
		return fmt.Errorf("%s breakpoint at %#x: write: %w", op, vaddr, err)
	}
	return nil
}
