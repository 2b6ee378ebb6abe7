package install

import (
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

// InsertBreakpoint writes int3 at vaddr with the kernel's verify-opcode
// semantics: it reads the one byte at vaddr; if it is orig (the instruction's
// first byte as found in the FILE) it writes 0xCC there; if it is already 0xCC
// it writes nothing and returns an error wrapping syscall.EEXIST (the
// breakpoint is there: callers count it as present); if it is anything else
// it writes nothing and returns an error wrapping syscall.EINVAL (the memory
// does not hold the file's code). Errors of mem are returned wrapped. It
// never writes more than one byte. orig == 0xCC is refused with EINVAL.
func InsertBreakpoint(mem Memory, vaddr uint64, orig byte) error {
	if orig == BreakpointInsn {
		return fmt.Errorf("install breakpoint at %#x: original byte is int3: %w", vaddr, syscall.EINVAL)
	}
	var b [1]byte
	if err := mem.ReadMemory(vaddr, b[:]); err != nil {
		return fmt.Errorf("install breakpoint at %#x: read: %w", vaddr, err)
	}
	switch b[0] {
	case BreakpointInsn:
		return fmt.Errorf("install breakpoint at %#x: int3 already there: %w", vaddr, syscall.EEXIST)
	case orig:
	default:
		return fmt.Errorf("install breakpoint at %#x: found byte %#02x, want %#02x (memory does not hold the file's code): %w",
			vaddr, b[0], orig, syscall.EINVAL)
	}
	b[0] = BreakpointInsn
	if err := mem.WriteMemory(vaddr, b[:]); err != nil {
		return fmt.Errorf("install breakpoint at %#x: write: %w", vaddr, err)
	}
	return nil
}

// RemoveBreakpoint restores orig at vaddr if and only if the byte there is
// 0xCC (verify-opcode): if it is anything else there is no breakpoint to
// remove, and it writes nothing and returns nil, as the kernel does. Errors
// of mem are returned wrapped. It never writes more than one byte.
func RemoveBreakpoint(mem Memory, vaddr uint64, orig byte) error {
	var b [1]byte
	if err := mem.ReadMemory(vaddr, b[:]); err != nil {
		return fmt.Errorf("remove breakpoint at %#x: read: %w", vaddr, err)
	}
	if b[0] != BreakpointInsn {
		return nil
	}
	b[0] = orig
	if err := mem.WriteMemory(vaddr, b[:]); err != nil {
		return fmt.Errorf("remove breakpoint at %#x: write: %w", vaddr, err)
	}
	return nil
}
