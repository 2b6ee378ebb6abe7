package install

import (
	"golang.org/x/arch/x86/x86asm"
)

// Regs is the x86-64 register file in the layout of the kernel's struct
// user_regs_struct, which PTRACE_GETREGS and PTRACE_SETREGS read and write:
// core/proc passes a *Regs to ptrace directly (a test there checks the
// layout against golang.org/x/sys/unix.PtraceRegs). Plans emulate
// instructions on it.
type Regs struct {
	R15, R14, R13, R12, Rbp, Rbx, R11, R10, R9, R8 uint64
	Rax, Rcx, Rdx, Rsi, Rdi                        uint64
	OrigRax                                        uint64 // the system call number at a syscall stop
	Rip, Cs, Eflags, Rsp, Ss                       uint64
	FsBase, GsBase                                 uint64
	Ds, Es, Fs, Gs                                 uint64
}

// gpr is a general-purpose register operand: its number in encoding order
// (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8...r15), its size in bytes, and
// whether it is one of the legacy high-byte registers ah, ch, dh, bh.
type gpr struct {
	num  uint8
	size uint8
	high bool
}

// gprOf maps an x86asm register argument to a gpr.
func gprOf(a x86asm.Arg) (gpr, bool) {
	r, ok := a.(x86asm.Reg)
	if !ok {
		return gpr{}, false
	}
	switch {
	case r >= x86asm.AL && r <= x86asm.BL:
		return gpr{num: uint8(r - x86asm.AL), size: 1}, true
	case r >= x86asm.AH && r <= x86asm.BH:
		return gpr{num: uint8(r - x86asm.AH), size: 1, high: true}, true
	case r >= x86asm.SPB && r <= x86asm.R15B:
		return gpr{num: uint8(r-x86asm.SPB) + 4, size: 1}, true
	case r >= x86asm.AX && r <= x86asm.R15W:
		return gpr{num: uint8(r - x86asm.AX), size: 2}, true
	case r >= x86asm.EAX && r <= x86asm.R15L:
		return gpr{num: uint8(r - x86asm.EAX), size: 4}, true
	case r >= x86asm.RAX && r <= x86asm.R15:
		return gpr{num: uint8(r - x86asm.RAX), size: 8}, true
	}
	return gpr{}, false
}

// slot64 returns the 64-bit register numbered n of regs.
func slot64(regs *Regs, n uint8) *uint64 {
	switch n {
	case 0:
		return &regs.Rax
	case 1:
		return &regs.Rcx
	case 2:
		return &regs.Rdx
	case 3:
		return &regs.Rbx
	case 4:
		return &regs.Rsp
	case 5:
		return &regs.Rbp
	case 6:
		return &regs.Rsi
	case 7:
		return &regs.Rdi
	case 8:
		return &regs.R8
	case 9:
		return &regs.R9
	case 10:
		return &regs.R10
	case 11:
		return &regs.R11
	case 12:
		return &regs.R12
	case 13:
		return &regs.R13
	case 14:
		return &regs.R14
	default:
		return &regs.R15
	}
}

// get reads r from regs, zero-extended.
func (r gpr) get(regs *Regs) uint64 {
	v := *slot64(regs, r.num)
	switch r.size {
	case 1:
		if r.high {
			return v >> 8 & 0xff
		}
		return v & 0xff
	case 2:
		return v & 0xffff
	case 4:
		return v & 0xffffffff
	}
	return v
}

// set writes v to r in regs with the x86-64 rules: a 32-bit write clears the
// upper half, 8- and 16-bit writes keep the other bits.
func (r gpr) set(regs *Regs, v uint64) {
	p := slot64(regs, r.num)
	switch r.size {
	case 1:
		if r.high {
			*p = *p&^0xff00 | (v&0xff)<<8
		} else {
			*p = *p&^0xff | v&0xff
		}
	case 2:
		*p = *p&^0xffff | v&0xffff
	case 4:
		*p = v & 0xffffffff
	default:
		*p = v
	}
}
