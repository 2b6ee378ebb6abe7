package install

import (
	"encoding/binary"
	"fmt"
	"math"

	"golang.org/x/arch/x86/x86asm"
)

// Branch slots. Emulating call and ret in the tracer writes the return
// address on the stack but cannot update a CET shadow stack: in a thread
// with shadow stacks enabled, the next native ret would then fault
// (control-protection). There, call and ret run for real in a slot
// instead, so the CPU keeps both stacks in step: ret as it is; call
// relocated to reach the same target from the slot, followed by the jump
// back, where the callee returns. The one visible difference is the return
// address the callee finds (in the slot, not after the probed call); it
// returns to the right place all the same.

// IsCallOrRet reports whether the instruction is a call or a ret: the
// instructions a shadow stack sees.
func (p *Plan) IsCallOrRet() bool {
	return p.op == opCall || p.op == opCallInd || p.op == opRet
}

// BranchSlotCode returns slot code at slotAddr that runs p's call or ret at
// insnAddr for real: "call TARGET" (a rel32 recomputed from the slot; an
// indirect call as it is, its RIP-relative displacement rewritten) then
// "jmp *0(%rip); .quad insnAddr+Len", or the ret alone. It fails with
// ErrSlotRange when a target is out of rel32 reach from the slot and
// ErrRefused for any other instruction.
func (p *Plan) BranchSlotCode(insnAddr, slotAddr uint64) ([]byte, error) {
	var code []byte
	next := insnAddr + uint64(p.Len)
	switch p.op {
	case opRet:
		return append(code, p.Insn...), nil
	case opCall:
		target := next + uint64(p.imm)
		rel, err := rel32(target, slotAddr+5)
		if err != nil {
			return nil, fmt.Errorf("branch slot at %#x for %s at %#x: %w", slotAddr, p.Asm, insnAddr, err)
		}
		code = append(code, 0xe8)
		code = binary.LittleEndian.AppendUint32(code, uint32(rel))
	case opCallInd:
		code = append(code, p.Insn...)
		if p.useMem && p.mem.Base == x86asm.RIP {
			// ff /2 has no immediate: the disp32 ends the instruction.
			disp := int64(int32(binary.LittleEndian.Uint32(p.Insn[p.Len-4:])))
			rel, err := rel32(next+uint64(disp), slotAddr+uint64(p.Len))
			if err != nil {
				return nil, fmt.Errorf("branch slot at %#x for %s at %#x: %w", slotAddr, p.Asm, insnAddr, err)
			}
			binary.LittleEndian.PutUint32(code[p.Len-4:], uint32(rel))
		}
	default:
		return nil, fmt.Errorf("branch slot for %s: not a call or ret: %w", p.Asm, ErrRefused)
	}
	code = append(code, jmpBack[:]...)
	return binary.LittleEndian.AppendUint64(code, next), nil
}

// rel32 returns target - from as a rel32, or ErrSlotRange.
func rel32(target, from uint64) (int32, error) {
	d := int64(target - from)
	if d < math.MinInt32 || d > math.MaxInt32 {
		return 0, fmt.Errorf("target %#x is %d bytes away: %w", target, d, ErrSlotRange)
	}
	return int32(d), nil
}
