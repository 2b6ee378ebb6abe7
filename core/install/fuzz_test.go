package install

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// FuzzAnalyzeBytes fuzzes the analyzer (seed corpus in
// testdata/fuzz/FuzzAnalyzeBytes): no panic; an accepted instruction has a
// sane length and plan, its slot decodes to an instruction of the same
// length, and its emulation succeeds on a permissive memory.
func FuzzAnalyzeBytes(f *testing.F) {
	for _, c := range meaningCases() {
		b, _ := decodeHex(c.hex)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, code []byte) {
		p, err := AnalyzeBytes(code)
		if err != nil {
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("AnalyzeBytes(% x): %v", code, err)
			}
			return
		}
		if p.Len < 1 || p.Len > MaxInsnLen || p.Len > len(code) || !bytes.Equal(p.Insn, code[:p.Len]) {
			t.Fatalf("AnalyzeBytes(% x): bad plan %v len %d", code, p, p.Len)
		}
		const at = 0x555555556000
		switch p.Kind {
		case Emulate:
			regs := Regs{Rip: at, Rsp: 0x7ffffffde000}
			if err := p.Emulate(&regs, anyMem{}); err != nil {
				t.Fatalf("%v: Emulate: %v", p, err)
			}
		case Slot:
			if !p.relocatable {
				t.Fatalf("%v: slot plan not relocatable", p)
			}
		default:
			t.Fatalf("%v: kind %v", p, p.Kind)
		}
		if !p.relocatable {
			return
		}
		if _, err := p.SlotCode(at, at+1<<20); err != nil && !(p.dispOff >= 0 && errors.Is(err, ErrSlotRange)) {
			t.Fatalf("%v: SlotCode: %v", p, err)
		}
		// From the instruction's own address every target is in reach.
		sc, err := p.SlotCode(at, at)
		if err != nil || len(sc) > MaxSlotSize || !bytes.Equal(sc[:p.Len], p.Insn) {
			t.Fatalf("%v: SlotCode: %d bytes, %v", p, len(sc), err)
		}
		if isEndbr(sc) {
			return
		}
		in, err := x86asm.Decode(sc, 64)
		if err != nil || in.Len != p.Len {
			t.Fatalf("%v: slot % x decodes to %v (len %d), %v", p, sc, in, in.Len, err)
		}
		if !bytes.Equal(sc[p.Len:p.Len+6], jmpBack[:]) {
			t.Fatalf("%v: slot % x does not jump back", p, sc)
		}
	})
}
