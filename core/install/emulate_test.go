package install

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

func mustPlan(t testing.TB, code ...byte) *Plan {
	t.Helper()
	p, err := AnalyzeBytes(code)
	if err != nil {
		t.Fatalf("AnalyzeBytes(% x): %v", code, err)
	}
	return p
}

// TestEmulateErrors checks that a failed emulation changes nothing.
func TestEmulateErrors(t *testing.T) {
	failing := &byteMem{err: syscall.ESRCH}
	for _, code := range [][]byte{
		{0x53},                         // push rbx
		{0xe8, 0, 0, 0, 0},             // call
		{0xc3},                         // ret
		{0xff, 0x15, 0, 0, 0, 0},       // call *0(%rip)
		{0xff, 0x25, 0, 0, 0, 0},       // jmp *0(%rip)
		{0x48, 0x8b, 0x05, 0, 0, 0, 0}, // a slot instruction
	} {
		p := mustPlan(t, code...)
		regs := Regs{Rip: 0x401000, Rsp: 0x7ff000, Rbx: 7}
		before := regs
		err := p.Emulate(&regs, failing)
		if err == nil || regs != before {
			t.Errorf("%s: Emulate = %v, regs changed: %v", p, err, regs != before)
		}
		if p.Kind == Emulate && !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s: Emulate = %v, want ESRCH", p, err)
		}
	}
}

func TestSlotCode(t *testing.T) {
	load := mustPlan(t, 0x48, 0x8b, 0x05, 0x00, 0x10, 0x00, 0x00) // mov 0x1000(%rip),%rax
	const at = 0x7f0000000000
	target := uint64(at + 7 + 0x1000)
	for _, c := range []struct {
		slot uint64
		ok   bool
	}{
		{at + 1<<20, true},
		{at - 1<<30, true},
		{target - 7 - 0x7fffffff, true},  // disp = 2^31-1 from the slot's next insn
		{target - 7 - 0x80000000, false}, // one too far below
		{target - 7 + 0x80000000, true},  // disp = -2^31
		{target - 7 + 0x80000001, false}, // one too far above
		{at + 3<<30, false},
	} {
		code, err := load.SlotCode(at, c.slot)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrSlotRange)) {
			t.Errorf("SlotCode(slot %#x) = %v, want ok=%v", c.slot, err, c.ok)
		}
		if err == nil && len(code) != 7+14 {
			t.Errorf("SlotCode: % x", code)
		}
	}
	// Without a rip-relative operand a slot can be anywhere.
	if _, err := mustPlan(t, 0x31, 0xc0).SlotCode(at, 0x1000); err != nil {
		t.Errorf("xor slot: %v", err)
	}
	// Branches must be emulated.
	for _, code := range [][]byte{{0xe8, 0, 0, 0, 0}, {0xc3}, {0x75, 0x10}, {0x48, 0x8d, 0x05, 0, 0, 0, 0}} {
		if _, err := mustPlan(t, code...).SlotCode(at, at+4096); !errors.Is(err, ErrRefused) {
			t.Errorf("SlotCode(% x) = %v, want ErrRefused", code, err)
		}
	}
}

// nullMem is a Memory that does nothing, for benchmarks.
type nullMem struct{}

func (nullMem) ReadMemory(vaddr uint64, p []byte) error  { return nil }
func (nullMem) WriteMemory(vaddr uint64, p []byte) error { return nil }

func benchEmulate(b *testing.B, code ...byte) {
	p := mustPlan(b, code...)
	var mem Memory = nullMem{}
	regs := Regs{Rsp: 0x7ff000, Eflags: 0x246}
	b.ReportAllocs()
	for b.Loop() {
		regs.Rip, regs.Rsp = 0x401000, 0x7ff000
		if err := p.Emulate(&regs, mem); err != nil {
			b.Fatal(err)
		}
	}
	if a := testing.AllocsPerRun(100, func() {
		regs.Rip, regs.Rsp = 0x401000, 0x7ff000
		p.Emulate(&regs, mem)
	}); a != 0 {
		b.Fatalf("Emulate(%s): %v allocs", p, a)
	}
}

func BenchmarkEmulatePush(b *testing.B) { benchEmulate(b, 0x53) }       // push %rbx
func BenchmarkEmulateJcc(b *testing.B)  { benchEmulate(b, 0x75, 0x10) } // jne
func BenchmarkEmulateCall(b *testing.B) { benchEmulate(b, 0xe8, 0, 0, 0, 0) }

// TestAnalyzeBytesRefusals covers refusals that need hand-made bytes.
func TestAnalyzeBytesRefusals(t *testing.T) {
	for _, c := range []struct{ hex, reason string }{
		{"67e2fe", "address-size prefix on a loop"},
		{"66c3", "operand-size prefix on a branch"},
		{"667510", "operand-size prefix on a branch"},
		{"678b0500000000", "eip-relative"},
		{"66e900000000", "operand-size prefix on a branch"},
		{"6232313030", "undecodable"}, // truncated EVEX
		{"", "undecodable"},
		{"f30f1e", "undecodable"},
		{"0f01f8", ""}, // swapgs
	} {
		code, _ := decodeHex(c.hex)
		p, err := AnalyzeBytes(code)
		if c.hex == "0f01f8" {
			// swapgs is privileged; it is not in the kernel's list either,
			// so it is slotted (and would fault there as it would in place).
			if err != nil {
				t.Errorf("%s: %v", c.hex, err)
			}
			continue
		}
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("AnalyzeBytes(%s) = %v, %v; want ErrRefused with %q", c.hex, p, err, c.reason)
		}
	}
}

// anyMem accepts every access: reads give zeros.
type anyMem struct{}

func (anyMem) ReadMemory(vaddr uint64, p []byte) error {
	clear(p)
	return nil
}

func (anyMem) WriteMemory(vaddr uint64, p []byte) error { return nil }
