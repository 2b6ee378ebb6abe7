package install

import (
	"encoding/binary"
	"fmt"
	"math"

	"golang.org/x/arch/x86/x86asm"
)

// Fault code: when Emulate fails because a memory access of the
// instruction would fault (call *(%rdi) through a bad pointer, a push or
// call onto a stack page not yet mapped), the fault must happen for real,
// in the process, so that the program sees exactly the native signal: its
// si_code and si_addr, and in the signal context the page-fault error code,
// trap number and cr2 (JVM-style null checks and Go's nil-pointer panics
// read them). The tracer cannot forge those; the CPU can. FaultCode is code
// that makes the instruction's memory accesses, in its order and with its
// addresses, and changes nothing but the arithmetic flags, followed by an
// int3: run in a slot with the thread's registers, it either faults exactly
// where the instruction would (the tracer then puts rip back on the
// instruction and lets the signal through) or reaches the int3 (the
// accesses succeed now, e.g. the kernel grew the stack on the write: the
// tracer restores the registers and emulates again).

// Fault-code templates, each checked against x86asm in fault_test.go.
var (
	// lock orq $0x0,-0x8(%rsp): the stack write of push and call. Locked
	// and or-ing zero, it leaves the quadword as it is, whatever another
	// thread writes there meanwhile; it is a write access for the MMU.
	faultPushWrite = []byte{0xf0, 0x48, 0x83, 0x4c, 0x24, 0xf8, 0x00}
	// test %rax,(%rsp): the read of the return address by ret.
	faultRetRead = []byte{0x48, 0x85, 0x04, 0x24}
)

// FaultEnd is the length of the int3 that ends fault code: a thread that
// reaches it stops with rip = slot + len(code).
const FaultEnd = 1

// HasFaultCode reports whether Emulate of p can fail on a memory access, so
// that FaultCode has code for it.
func (p *Plan) HasFaultCode() bool {
	switch p.op {
	case opPush, opCall, opCallInd, opJmpInd, opRet:
		return p.op != opJmpInd || p.useMem
	}
	return false
}

// FaultCode returns the fault code of p's instruction at insnAddr placed at
// slotAddr (see above). It fails with ErrSlotRange if a RIP-relative
// operand is out of reach from slotAddr, and ErrRefused for an instruction
// whose emulation makes no memory access.
func (p *Plan) FaultCode(insnAddr, slotAddr uint64) ([]byte, error) {
	if !p.HasFaultCode() {
		return nil, fmt.Errorf("fault code for %s: a %s instruction makes no memory access: %w", p.Asm, p.Class, ErrRefused)
	}
	var code []byte
	switch p.op {
	case opRet:
		code = append(code, faultRetRead...)
	case opJmpInd, opCallInd:
		if p.useMem {
			read, err := p.readCode(insnAddr, slotAddr)
			if err != nil {
				return nil, err
			}
			code = append(code, read...)
		}
	}
	if p.op == opPush || p.op == opCall || p.op == opCallInd {
		code = append(code, faultPushWrite...)
	}
	return append(code, BreakpointInsn), nil
}

// readCode returns "test %r64,MEM" with the memory operand of p's
// indirect jmp or call (ff /2, ff /4; its segment and address-size
// prefixes, REX.X/B, ModRM, SIB and displacement), placed at slotAddr: it
// reads the 8 bytes the branch would read, from the same address.
func (p *Plan) readCode(insnAddr, slotAddr uint64) ([]byte, error) {
	in := p.Insn
	var pre []byte
	i := 0
	for ; i < len(in); i++ {
		b := in[i]
		switch b {
		case 0x64, 0x65, 0x67: // fs, gs, address size: they change the address
			pre = append(pre, b)
			continue
		case 0x26, 0x2e, 0x36, 0x3e, 0x66, 0xf0, 0xf2, 0xf3: // no effect on the address (notrack, bnd)
			continue
		}
		break
	}
	rex := byte(0x48)
	if i < len(in) && in[i]&0xf0 == 0x40 {
		rex |= in[i]
		i++
	}
	if i+1 >= len(in) || in[i] != 0xff {
		return nil, fmt.Errorf("fault code for %s: not an ff /2 or ff /4 instruction: %w", p.Asm, ErrRefused)
	}
	rest := in[i+1:] // ModRM, SIB, displacement
	code := append(append(pre, rex, 0x85), rest...)
	if p.mem.Base == x86asm.RIP {
		// ff /2 and ff /4 have no immediate: the disp32 ends the
		// instruction.
		at := len(code) - 4
		disp := int64(int32(binary.LittleEndian.Uint32(in[len(in)-4:])))
		target := insnAddr + uint64(p.Len) + uint64(disp)
		nd := int64(target - (slotAddr + uint64(len(code))))
		if nd < math.MinInt32 || nd > math.MaxInt32 {
			return nil, fmt.Errorf("fault code at %#x for %s at %#x: rip-relative target %#x is %d bytes away: %w",
				slotAddr, p.Asm, insnAddr, target, nd, ErrSlotRange)
		}
		binary.LittleEndian.PutUint32(code[at:], uint32(int32(nd)))
	}
	// The surgery must give a test with the same memory operand.
	inst, err := x86asm.Decode(code, 64)
	if err != nil || inst.Op != x86asm.TEST || inst.Len != len(code) {
		return nil, fmt.Errorf("fault code for %s: % x does not decode as a test (%v): %w", p.Asm, code, err, ErrRefused)
	}
	return code, nil
}

// PopsFlags reports whether the instruction is a popf: one that may set
// TF, whose single-step trap then comes after the next instruction.
func (p *Plan) PopsFlags() bool {
	switch p.inst.Op {
	case x86asm.POPF, x86asm.POPFD, x86asm.POPFQ:
		return true
	}
	return false
}
