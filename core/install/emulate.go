package install

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"

	"golang.org/x/arch/x86/x86asm"
)

// emuOp is an emulated operation. opJmp+1 and opCall+1 are the indirect
// forms.
type emuOp uint8

const (
	opNone emuOp = iota
	opNop
	opPush
	opMov
	opLea
	opAddRsp
	opSubRsp
	opJmp
	opJmpInd
	opCall
	opCallInd
	opJcc
	opLoop
	opRet
)

// Arithmetic flags of RFLAGS.
const (
	flagCF = 1 << 0
	flagPF = 1 << 2
	flagAF = 1 << 4
	flagZF = 1 << 6
	flagSF = 1 << 7
	flagOF = 1 << 11
	// ArithFlags is the mask of the flags add and sub set.
	arithFlags = flagCF | flagPF | flagAF | flagZF | flagSF | flagOF
)

// word is an 8-byte scratch buffer for Memory calls. Slices passed to an
// interface method escape, so they come from a pool to keep Emulate free of
// allocations.
type word [8]byte

var words = sync.Pool{New: func() any { return new(word) }}

// Emulate applies the effect of the instruction to regs and, for push and
// call, to the stack through mem: regs.Rip must be the address of the probed
// instruction (the breakpoint address, not the address after int3), and
// afterwards it is the address execution continues at. Indirect branches
// through memory and ret read mem. On error (an instruction of Kind Slot, or
// a mem error, which is returned wrapped) regs and memory are unchanged.
// Emulate is safe for concurrent use on distinct regs and does not allocate.
func (p *Plan) Emulate(regs *Regs, mem Memory) error {
	next := regs.Rip + uint64(p.Len)
	switch p.op {
	case opNop:
	case opPush:
		v := p.src.get(regs) // push rsp pushes the old rsp
		if err := writeWord(mem, regs.Rsp-8, v); err != nil {
			return err
		}
		regs.Rsp -= 8
	case opMov:
		p.dst.set(regs, p.src.get(regs))
	case opLea:
		p.dst.set(regs, p.addr(regs, next, false))
	case opAddRsp, opSubRsp:
		a, b := regs.Rsp, uint64(p.imm)
		var r uint64
		var fl uint64
		if p.op == opAddRsp {
			r = a + b
			if r < a {
				fl |= flagCF
			}
			fl |= ((a ^ r) & (b ^ r)) >> 63 * flagOF
		} else {
			r = a - b
			if a < b {
				fl |= flagCF
			}
			fl |= ((a ^ b) & (a ^ r)) >> 63 * flagOF
		}
		fl |= (a ^ b ^ r) & flagAF
		if r == 0 {
			fl |= flagZF
		}
		fl |= r >> 63 * flagSF
		if bits.OnesCount8(uint8(r))%2 == 0 {
			fl |= flagPF
		}
		regs.Rsp = r
		regs.Eflags = regs.Eflags&^arithFlags | fl
	case opJmp:
		next += uint64(p.imm)
	case opJmpInd, opCallInd:
		t, err := p.target(regs, next, mem)
		if err != nil {
			return err
		}
		if p.op == opCallInd {
			if err := writeWord(mem, regs.Rsp-8, next); err != nil {
				return err
			}
			regs.Rsp -= 8
		}
		next = t
	case opCall:
		if err := writeWord(mem, regs.Rsp-8, next); err != nil {
			return err
		}
		regs.Rsp -= 8
		next += uint64(p.imm)
	case opJcc:
		if p.cond(regs.Eflags) {
			next += uint64(p.imm)
		}
	case opLoop:
		if p.inst.Op == x86asm.JRCXZ || p.inst.Op == x86asm.JECXZ {
			c := regs.Rcx
			if p.inst.Op == x86asm.JECXZ {
				c &= 0xffffffff
			}
			if c == 0 {
				next += uint64(p.imm)
			}
			break
		}
		regs.Rcx--
		zf := regs.Eflags&flagZF != 0
		if regs.Rcx != 0 && (p.inst.Op == x86asm.LOOP || (p.inst.Op == x86asm.LOOPE && zf) || (p.inst.Op == x86asm.LOOPNE && !zf)) {
			next += uint64(p.imm)
		}
	case opRet:
		t, err := readWord(mem, regs.Rsp)
		if err != nil {
			return err
		}
		regs.Rsp += 8 + uint64(p.imm)
		next = t
	default:
		return fmt.Errorf("emulate %s: a %s instruction cannot be emulated", p.Asm, p.Kind)
	}
	regs.Rip = next
	return nil
}

// addr computes the effective address of p.mem; with seg, an fs or gs
// segment base is added (lea ignores segments).
func (p *Plan) addr(regs *Regs, next uint64, seg bool) uint64 {
	m := &p.mem
	a := uint64(m.Disp)
	switch m.Base {
	case 0:
	case x86asm.RIP:
		a += next
	default:
		a += *slot64(regs, uint8(m.Base-x86asm.RAX))
	}
	if m.Index != 0 {
		a += *slot64(regs, uint8(m.Index-x86asm.RAX)) * uint64(m.Scale)
	}
	if seg {
		switch m.Segment {
		case x86asm.FS:
			a += regs.FsBase
		case x86asm.GS:
			a += regs.GsBase
		}
	}
	return a
}

// target returns the destination of an indirect jmp or call.
func (p *Plan) target(regs *Regs, next uint64, mem Memory) (uint64, error) {
	if !p.useMem {
		return p.src.get(regs), nil
	}
	return readWord(mem, p.addr(regs, next, true))
}

// cond evaluates the condition of a jcc on flags.
func (p *Plan) cond(fl uint64) bool {
	cf, zf, sf, of, pf := fl&flagCF != 0, fl&flagZF != 0, fl&flagSF != 0, fl&flagOF != 0, fl&flagPF != 0
	switch p.inst.Op {
	case x86asm.JO:
		return of
	case x86asm.JNO:
		return !of
	case x86asm.JB:
		return cf
	case x86asm.JAE:
		return !cf
	case x86asm.JE:
		return zf
	case x86asm.JNE:
		return !zf
	case x86asm.JBE:
		return cf || zf
	case x86asm.JA:
		return !cf && !zf
	case x86asm.JS:
		return sf
	case x86asm.JNS:
		return !sf
	case x86asm.JP:
		return pf
	case x86asm.JNP:
		return !pf
	case x86asm.JL:
		return sf != of
	case x86asm.JGE:
		return sf == of
	case x86asm.JLE:
		return zf || sf != of
	default: // JG
		return !zf && sf == of
	}
}

func writeWord(mem Memory, addr, v uint64) error {
	w := words.Get().(*word)
	binary.LittleEndian.PutUint64(w[:], v)
	err := mem.WriteMemory(addr, w[:])
	words.Put(w)
	if err != nil {
		return fmt.Errorf("emulate: write stack at %#x: %w", addr, err)
	}
	return nil
}

func readWord(mem Memory, addr uint64) (uint64, error) {
	w := words.Get().(*word)
	err := mem.ReadMemory(addr, w[:])
	v := binary.LittleEndian.Uint64(w[:])
	words.Put(w)
	if err != nil {
		return 0, fmt.Errorf("emulate: read memory at %#x: %w", addr, err)
	}
	return v, nil
}
