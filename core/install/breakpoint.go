package install

import (
	"bytes"
	"fmt"
	"syscall"
)

// Memory is how this package reads and writes a traced address space. It has
// the method set of rmap.AddressSpace, so any rmap.AddressSpace is a Memory.
// Errors should wrap syscall.ESRCH when the address space is gone and
// syscall.EFAULT when vaddr is not mapped; they are passed through wrapped.
type Memory interface {
	ReadMemory(vaddr uint64, p []byte) error
	WriteMemory(vaddr uint64, p []byte) error
}

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
	insn = insn[:min(len(insn), maxCheck)]
	var buf [maxCheck]byte
	b := buf[:len(insn)]
	if err := mem.ReadMemory(vaddr, b); err != nil {
		return fmt.Errorf("install breakpoint at %#x: read: %w", vaddr, err)
	}
	switch {
	case bytes.Equal(b, insn):
	case b[0] == BreakpointInsn && bytes.Equal(b[1:], insn[1:]):
		return fmt.Errorf("install breakpoint at %#x: int3 already there: %w", vaddr, syscall.EEXIST)
	default:
		return fmt.Errorf("install breakpoint at %#x: found [% x], want [% x] (memory does not hold the file's code): %w",
			vaddr, b, insn, syscall.EINVAL)
	}
	if err := mem.WriteMemory(vaddr, []byte{BreakpointInsn}); err != nil {
		return fmt.Errorf("install breakpoint at %#x: write: %w", vaddr, err)
	}
	return nil
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
	insn = insn[:min(len(insn), maxCheck)]
	var buf [maxCheck]byte
	b := buf[:len(insn)]
	if err := mem.ReadMemory(vaddr, b); err != nil {
		return fmt.Errorf("remove breakpoint at %#x: read: %w", vaddr, err)
	}
	switch {
	case bytes.Equal(b, insn):
		return nil
	case b[0] == BreakpointInsn && bytes.Equal(b[1:], insn[1:]):
	default:
		return fmt.Errorf("remove breakpoint at %#x: found [% x], want int3 then [% x] (memory does not hold the file's code): %w",
			vaddr, b, insn[1:], syscall.EINVAL)
	}
	if err := mem.WriteMemory(vaddr, insn[:1]); err != nil {
		return fmt.Errorf("remove breakpoint at %#x: write: %w", vaddr, err)
	}
	return nil
}
