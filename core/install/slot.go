package install

import (
	"encoding/binary"
	"fmt"
	"math"
)

// MaxSlotSize is the most bytes SlotCode returns: a relocated instruction
// (at most 15 bytes) and an absolute jump back (14 bytes), rounded up with
// room to spare. Slots MaxSlotSize bytes apart never overlap.
const MaxSlotSize = 64

// jmpBack is "jmp *0(%rip)": an absolute indirect jump through the 8-byte
// address that follows it, so a slot can be anywhere in the address space.
var jmpBack = [...]byte{0xff, 0x25, 0, 0, 0, 0}

// SlotCode returns the code to place at slotAddr that executes the
// instruction as if at insnAddr and then jumps to insnAddr+Len: the
// instruction, its RIP-relative displacement (if any) rewritten so it reaches
// the same target from the slot, then "jmp *0(%rip); .quad insnAddr+Len".
// The slot needs no stack and clobbers no register. It fails with an error
// wrapping ErrSlotRange if the RIP-relative target is out of reach (±2 GiB)
// from slotAddr, and ErrRefused if the instruction is one that must be
// emulated (relative or indirect branches, call, ret, rip-relative lea).
func (p *Plan) SlotCode(insnAddr, slotAddr uint64) ([]byte, error) {
	if !p.relocatable {
		return nil, fmt.Errorf("slot for %s: a %s instruction must be emulated: %w", p.Asm, p.Class, ErrRefused)
	}
	code := make([]byte, 0, p.Len+len(jmpBack)+8)
	code = append(code, p.Insn...)
	if p.dispOff >= 0 {
		disp := int64(int32(binary.LittleEndian.Uint32(p.Insn[p.dispOff:])))
		target := insnAddr + uint64(p.Len) + uint64(disp)
		nd := int64(target - (slotAddr + uint64(p.Len)))
		if nd < math.MinInt32 || nd > math.MaxInt32 {
			return nil, fmt.Errorf("slot at %#x for %s at %#x: rip-relative target %#x is %d bytes away: %w",
				slotAddr, p.Asm, insnAddr, target, nd, ErrSlotRange)
		}
		binary.LittleEndian.PutUint32(code[p.dispOff:], uint32(int32(nd)))
	}
	code = append(code, jmpBack[:]...)
	code = binary.LittleEndian.AppendUint64(code, insnAddr+uint64(p.Len))
	return code, nil
}
