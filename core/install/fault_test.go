package install

import (
	"errors"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestFaultCode decodes the fault code of every instruction whose emulation
// accesses memory back with x86asm: the reads and writes it makes, in order,
// on the same operand (a RIP-relative one reaching the same address from
// the slot), and the int3 at its end.
func TestFaultCode(t *testing.T) {
	const insnAddr, slotAddr = 0x401000, 0x3ff000
	stackWrite := x86asm.Mem{Base: x86asm.RSP, Disp: -8}
	retRead := x86asm.Mem{Base: x86asm.RSP}
	for _, c := range []struct {
		code []byte
		want []x86asm.Mem // the memory operands, in order
		ops  []x86asm.Op
	}{
		{[]byte{0xc3}, []x86asm.Mem{retRead}, []x86asm.Op{x86asm.TEST}},
		{[]byte{0xc2, 0x08, 0x00}, []x86asm.Mem{retRead}, []x86asm.Op{x86asm.TEST}},
		{[]byte{0xe8, 1, 2, 3, 4}, []x86asm.Mem{stackWrite}, []x86asm.Op{x86asm.OR}},
		{[]byte{0xff, 0xd0}, []x86asm.Mem{stackWrite}, []x86asm.Op{x86asm.OR}},
		{[]byte{0xff, 0x17}, []x86asm.Mem{{Base: x86asm.RDI}, stackWrite}, []x86asm.Op{x86asm.TEST, x86asm.OR}},
		{[]byte{0x41, 0xff, 0x54, 0xc5, 0x10}, []x86asm.Mem{{Base: x86asm.R13, Index: x86asm.RAX, Scale: 8, Disp: 0x10}, stackWrite}, []x86asm.Op{x86asm.TEST, x86asm.OR}},
		{[]byte{0x64, 0xff, 0x14, 0x25, 0x28, 0, 0, 0}, []x86asm.Mem{{Segment: x86asm.FS, Disp: 0x28}, stackWrite}, []x86asm.Op{x86asm.TEST, x86asm.OR}},
		{[]byte{0xf2, 0xff, 0x10}, []x86asm.Mem{{Base: x86asm.RAX}, stackWrite}, []x86asm.Op{x86asm.TEST, x86asm.OR}},
		{[]byte{0xff, 0x27}, []x86asm.Mem{{Base: x86asm.RDI}}, []x86asm.Op{x86asm.TEST}},
		{[]byte{0xf2, 0xff, 0x25, 0x10, 0x20, 0, 0}, []x86asm.Mem{{Base: x86asm.RIP, Disp: insnAddr + 7 + 0x2010}}, []x86asm.Op{x86asm.TEST}},
		{[]byte{0xff, 0x15, 0x10, 0x20, 0, 0}, []x86asm.Mem{{Base: x86asm.RIP, Disp: insnAddr + 6 + 0x2010}, stackWrite}, []x86asm.Op{x86asm.TEST, x86asm.OR}},
		{[]byte{0x53}, []x86asm.Mem{stackWrite}, []x86asm.Op{x86asm.OR}},
	} {
		p := mustPlan(t, c.code...)
		if !p.HasFaultCode() {
			t.Errorf("%s: no fault code", p)
			continue
		}
		code, err := p.FaultCode(insnAddr, slotAddr)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		pos := 0
		for i, m := range c.want {
			inst, err := x86asm.Decode(code[pos:], 64)
			if err != nil {
				t.Fatalf("%s: fault code % x: decode at %d: %v", p, code, pos, err)
			}
			pos += inst.Len
			var got x86asm.Mem
			n := 0
			for _, a := range inst.Args {
				if mm, ok := a.(x86asm.Mem); ok {
					got, n = mm, n+1
				}
			}
			if got.Index == 0 {
				got.Scale = 0 // no index: the scale means nothing
			}
			if got.Base == x86asm.RIP {
				got.Disp += int64(slotAddr + uint64(pos)) // to an absolute address
			}
			if inst.Op != c.ops[i] || n != 1 || got != m || inst.DataSize != 64 {
				t.Errorf("%s: fault code % x insn %d: %v (%d memory operands, %+v, %d bits), want %v on %+v",
					p, code, i, inst, n, got, inst.DataSize, c.ops[i], m)
			}
			if inst.Op == x86asm.OR && (inst.Prefix[0]&0xff != x86asm.PrefixLOCK || inst.Args[1] != x86asm.Imm(0)) {
				t.Errorf("%s: the stack write must be lock or $0: %v", p, inst)
			}
		}
		if pos != len(code)-FaultEnd || code[pos] != BreakpointInsn {
			t.Errorf("%s: fault code % x: want the accesses then int3 at %d", p, code, pos)
		}
	}
	for _, code := range [][]byte{{0x90}, {0xeb, 0x10}, {0x74, 0x10}, {0xff, 0xe0}, {0x48, 0x8b, 0x07}} {
		p := mustPlan(t, code...)
		if _, err := p.FaultCode(insnAddr, slotAddr); p.HasFaultCode() || !errors.Is(err, ErrRefused) {
			t.Errorf("%s: HasFaultCode %v, FaultCode error %v: want none, ErrRefused", p, p.HasFaultCode(), err)
		}
	}
}

// FuzzFaultCode: for any instruction with fault code, the code decodes as
// accesses followed by int3, and the read (if any) is a test on the
// branch's own memory operand.
func FuzzFaultCode(f *testing.F) {
	for _, s := range [][]byte{{0xff, 0x17}, {0x41, 0xff, 0x54, 0xc5, 0x10}, {0xff, 0x15, 1, 2, 3, 4}, {0xc3}, {0x64, 0x67, 0xff, 0x10}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := AnalyzeBytes(b)
		if err != nil || !p.HasFaultCode() {
			return
		}
		code, err := p.FaultCode(0x401000, 0x400000)
		if err != nil {
			if !errors.Is(err, ErrRefused) && !errors.Is(err, ErrSlotRange) {
				t.Fatalf("%s: %v", p, err)
			}
			return
		}
		pos := 0
		for pos < len(code)-FaultEnd {
			inst, err := x86asm.Decode(code[pos:], 64)
			if err != nil || (inst.Op != x86asm.TEST && inst.Op != x86asm.OR) {
				t.Fatalf("%s: fault code % x at %d: %v %v", p, code, pos, inst, err)
			}
			pos += inst.Len
		}
		if pos != len(code)-FaultEnd || code[pos] != BreakpointInsn {
			t.Fatalf("%s: fault code % x does not end in int3 after its accesses", p, code)
		}
	})
}
