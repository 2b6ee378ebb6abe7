package install

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestBranchSlotCode decodes every branch slot back with x86asm: the call
// reaches the probed call's target from the slot, the jump back goes to
// the instruction after the probed one, a ret is itself.
func TestBranchSlotCode(t *testing.T) {
	const insnAddr, slotAddr = 0x401000, 0x3ff080
	for _, c := range []struct {
		code   []byte
		target uint64 // absolute target of a direct call, or of a RIP-relative operand
	}{
		{[]byte{0xe8, 0x10, 0, 0, 0}, insnAddr + 5 + 0x10},
		{[]byte{0xe8, 0xf0, 0xff, 0xff, 0xff}, insnAddr + 5 - 0x10},
		{[]byte{0xff, 0xd0}, 0},
		{[]byte{0x41, 0xff, 0x54, 0xc5, 0x10}, 0},
		{[]byte{0xff, 0x15, 0x10, 0x20, 0, 0}, insnAddr + 6 + 0x2010},
		{[]byte{0xc3}, 0},
		{[]byte{0xc2, 0x10, 0}, 0},
	} {
		p := mustPlan(t, c.code...)
		if !p.IsCallOrRet() {
			t.Fatalf("%s: not a call or ret", p)
		}
		code, err := p.BranchSlotCode(insnAddr, slotAddr)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		inst, err := x86asm.Decode(code, 64)
		if err != nil {
			t.Fatalf("%s: % x: %v", p, code, err)
		}
		if inst.Op != p.inst.Op || inst.Len != p.Len {
			t.Errorf("%s: slot starts with %v (%d bytes), want the same instruction", p, inst, inst.Len)
		}
		if p.op == opRet {
			if len(code) != p.Len {
				t.Errorf("%s: a ret slot is the ret alone, got % x", p, code)
			}
			continue
		}
		switch a := inst.Args[0].(type) {
		case x86asm.Rel:
			if got := slotAddr + uint64(inst.Len) + uint64(int64(a)); got != c.target {
				t.Errorf("%s: slot call reaches %#x, want %#x", p, got, c.target)
			}
		case x86asm.Mem:
			if a.Base == x86asm.RIP {
				if got := slotAddr + uint64(inst.Len) + uint64(a.Disp); got != c.target {
					t.Errorf("%s: slot operand at %#x, want %#x", p, got, c.target)
				}
			} else if a != p.mem {
				t.Errorf("%s: slot operand %+v, want %+v", p, a, p.mem)
			}
		}
		back, err := x86asm.Decode(code[inst.Len:], 64)
		if err != nil || back.Op != x86asm.JMP || back.Len != len(jmpBack) {
			t.Fatalf("%s: no jump back after the call: %v %v", p, back, err)
		}
		if got := binary.LittleEndian.Uint64(code[inst.Len+back.Len:]); got != insnAddr+uint64(p.Len) || len(code) != inst.Len+back.Len+8 {
			t.Errorf("%s: jump back to %#x, want %#x", p, got, insnAddr+uint64(p.Len))
		}
	}
	for _, code := range [][]byte{{0x90}, {0xeb, 0x10}, {0xff, 0xe0}, {0x53}} {
		if _, err := mustPlan(t, code...).BranchSlotCode(insnAddr, slotAddr); !errors.Is(err, ErrRefused) {
			t.Errorf("% x: %v, want ErrRefused", code, err)
		}
	}
	far := mustPlan(t, 0xe8, 0, 0, 0, 0x7f)
	if _, err := far.BranchSlotCode(0x7000_0000_0000, 0x7000_0000_0000-0x1000_0000); !errors.Is(err, ErrSlotRange) {
		t.Errorf("far call: %v, want ErrSlotRange", err)
	}
}
