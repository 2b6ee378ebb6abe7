package install

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// jcase is one displaced sequence run natively and through its trampoline.
type jcase struct {
	class string
	hex   string
	setup func(r *hRegs, in *hIn)
	flags []uint64
	rip   bool           // has a RIP-relative operand: out of reach from the far page
	sig   syscall.Signal // the native run's signal (0: SIGTRAP, the int3 after it)
}

// rr encodes an instruction at insnAt+off whose RIP-relative operand
// reaches target: pre, disp32, post (hex).
func rr(off int, pre string, target uint64, post string) string {
	n := (len(pre) + len(post)) / 2
	var d [4]byte
	binary.LittleEndian.PutUint32(d[:], uint32(int32(int64(target)-int64(insnAt+uint64(off)+uint64(n)+4))))
	return pre + hex.EncodeToString(d[:]) + post
}

func jumpCases() []jcase {
	retAt := func(k int) func(r *hRegs, in *hIn) {
		return func(r *hRegs, in *hIn) { put64(in.Stack[0x800+k:], hCode+0x300) }
	}
	var cs []jcase
	add := func(class string, hexes ...string) {
		for _, h := range hexes {
			cs = append(cs, jcase{class: class, hex: h})
		}
	}
	add("plain", "554889e54883ec10", "415741564155", "5341545b415c", "31c04889e5", "4801d84829c8",
		"0f1f440000", "c94889e590", "64488b042528000000", "48c7c0ffffffff", "4899480fafc3")
	add("endbr64", "f30f1efa55", "f30f1efa4883ec18", "f30f1efa4157")
	add("push-pop", "5053515a90", "4154415d90") // pushf/popf are refused (TestAnalyzeJump)
	for _, c := range []jcase{
		{class: "riprel-load", hex: rr(0, "488b05", hData+0x80, "")},
		{class: "riprel-load", hex: "55" + rr(1, "488b05", hData+0x80, "")},
		{class: "riprel-load", hex: rr(0, "0fb60d", hData+0x81, "")},
		{class: "riprel-store", hex: rr(0, "488905", hData+0x88, "")},
		{class: "riprel-store", hex: rr(0, "c705", hData+0x90, "78563412")},
		{class: "riprel-store", hex: "90" + rr(1, "48ff05", hData+0x98, "")},
		{class: "riprel-lea", hex: rr(0, "488d05", hData+0x80, "")},
		{class: "riprel-lea", hex: rr(0, "4c8d3d", hData+0x3ffff000, "")},
		{class: "riprel-cmp-jcc", hex: "7410" + rr(2, "833d", hData+0x80, "05"), flags: allFlags},
		{class: "riprel-lock", hex: rr(0, "f0480105", hData+0xa0, "")},
		{class: "riprel-lock", hex: "90" + rr(1, "f0480fb10d", hData+0xa8, "")},
	} {
		c.rip = true
		cs = append(cs, c)
	}
	add("alu", "48d3e04899", "48c1f80590", "480fafc390", "4887d84801c8", "0fc8480fcb", "480fb1cb90")
	strs := func(r *hRegs, in *hIn) {
		r.R[6], r.R[7], r.R[1] = hData+0x10, hData+0x200, 16 // rsi, rdi, rcx
	}
	cs = append(cs, jcase{class: "rep-movs", hex: "f3a4909090", setup: strs},
		jcase{class: "rep-stos", hex: "f348ab9090", setup: strs},
		jcase{class: "div", hex: "48f7f19090", setup: func(r *hRegs, in *hIn) { r.R[1], r.R[2] = 7, 0 }},
		jcase{class: "div-by-zero", hex: "48f7f19090", setup: func(r *hRegs, in *hIn) { r.R[1] = 0 }, sig: syscall.SIGFPE},
		jcase{class: "fault", hex: "90488b0790", setup: func(r *hRegs, in *hIn) { r.R[7] = 0x1000 }, sig: syscall.SIGSEGV})
	for cc := 0; cc < 16; cc++ {
		cs = append(cs,
			jcase{class: "jcc-rel8-last", hex: fmt.Sprintf("909090%02x10", 0x70+cc), flags: allFlags},
			jcase{class: "jcc-rel32", hex: fmt.Sprintf("0f%02x", 0x80+cc) + le32(0x80), flags: allFlags},
			jcase{class: "jcc-first", hex: fmt.Sprintf("%02x104889e5", 0x70+cc), flags: allFlags})
	}
	cs = append(cs, jcase{class: "jcc-back", hex: "90909072f0", flags: allFlags},
		jcase{class: "jcc-back", hex: "0f82" + le32(-0x100), flags: allFlags})
	add("jmp-last", "4889e5eb10", "e900010000", "55e9"+le32(-0x80), "909090ebf0")
	add("call-last", "e800020000", "55e800ffffff", "4883ec08e8"+le32(0x100), "f30f1efae8"+le32(0x10))
	// The alignment-check flag: every address the trampoline reads is
	// aligned (an absolute jump's too).
	const ac = 1 << 18
	cs = append(cs, jcase{class: "jmp-last-ac", hex: "4889e5eb10", flags: []uint64{ac}},
		jcase{class: "jcc-ac", hex: "90909074f0", flags: []uint64{ac, ac | flagZF}},
		jcase{class: "call-last-ac", hex: "55e800ffffff", flags: []uint64{ac}})
	cs = append(cs,
		jcase{class: "ret-last", hex: "5d415c5bc3", setup: retAt(24)},
		jcase{class: "ret-last", hex: "4883c408c3", setup: retAt(8)},
		jcase{class: "ret-last", hex: "90909090f3c3", setup: retAt(0)},
		jcase{class: "ret-last", hex: "90909090c21000", setup: retAt(0)},
	)
	return cs
}

const counterStart = 0x1122334455667788

// TestJumpMeaning runs every displaced sequence natively in the harness
// and through its trampoline — entered by the jump site from a trampoline
// in the code page and in the slot page 1.1 GiB away (rel32 forms), entered
// directly in the far page (absolute forms), and at the trap path's entry
// — and compares registers, flags, memory and the stack (but for the
// trampoline's own pushfq word below the red zone), and that the counter
// went up exactly once (not at all from entry).
func TestJumpMeaning(t *testing.T) {
	h := startHarness(t)
	runs := 0
	for _, c := range jumpCases() {
		code, err := decodeHex(c.hex)
		if err != nil {
			t.Fatalf("%s: %v", c.hex, err)
		}
		j, err := AnalyzeJump(code)
		if err != nil {
			t.Errorf("%s (%s): AnalyzeJump: %v", c.hex, c.class, err)
			continue
		}
		if j.Len != len(code) {
			t.Errorf("%s (%s): %v: len %d, want %d", c.hex, c.class, j, j.Len, len(code))
			continue
		}
		flags := c.flags
		if flags == nil {
			flags = []uint64{0, arithFlags}
		}
		for _, fl := range flags {
			name := fmt.Sprintf("%s (%s; %s) flags %#x", c.hex, c.class, strings.Join(j.Asm, "; "), fl)
			mc := mcase{setup: c.setup}
			in := startState(&mc, fl, hStack+0x800)
			copy(in.Code[insnAt-hCode:], code)
			in.Regs.Rip = insnAt
			native := h.run(t, in)
			runs++
			if want := cmp.Or(c.sig, syscall.SIGTRAP); native.Sig != uint64(want) {
				t.Errorf("%s: native run got signal %d at %#x, want %d", name, native.Sig, native.Regs.Rip, want)
				continue
			}
			for _, pl := range []struct {
				at, counter uint64
				viaSite     bool
			}{
				{hCode + 0x800, hData + 0xf00, true},
				{hSlot + 0x40, hData + 0xf00, true},
				{hFar + 0x40, hFar + 0x800, false},
			} {
				tc, entry, err := j.Trampoline(insnAt, pl.at, pl.counter)
				if pl.at == hFar+0x40 && c.rip {
					if !errors.Is(err, ErrSlotRange) {
						t.Errorf("%s: far trampoline: %v, want ErrSlotRange", name, err)
					}
					continue
				}
				if err != nil || len(tc) > MaxTrampSize {
					t.Errorf("%s: Trampoline(%#x): %d bytes, %v", name, pl.at, len(tc), err)
					continue
				}
				for _, fromEntry := range []bool{false, true} {
					pname := fmt.Sprintf("%s tramp %#x", name, pl.at)
					sin := startState(&mc, fl, hStack+0x800)
					copy(sin.Code[insnAt-hCode:], code)
					place(sin, pl.at, tc)
					put64(page64(sin, pl.counter), counterStart)
					switch {
					case fromEntry:
						pname += " from entry"
						sin.Regs.Rip = pl.at + uint64(entry)
					case pl.viaSite:
						jmp, err := JumpInsn(insnAt, pl.at)
						if err != nil {
							t.Fatal(err)
						}
						copy(sin.Code[insnAt-hCode:], jmp)
						sin.Regs.Rip = insnAt
					default:
						sin.Regs.Rip = pl.at
					}
					got := h.run(t, sin)
					runs++
					if got.Regs.Rip >= pl.at && got.Regs.Rip < pl.at+uint64(len(tc)) {
						// A fault of a relocated instruction: map it back.
						pc, ok := j.PCAt(insnAt, pl.at, int(got.Regs.Rip-pl.at))
						if !ok || pc.Prologue || pc.RSPAdd != 0 {
							t.Errorf("%s: stopped at trampoline offset %d: %+v %v", pname, got.Regs.Rip-pl.at, pc, ok)
						}
						got.Regs.Rip = insnAt + uint64(pc.Off)
					}
					want := uint64(counterStart + 1)
					if fromEntry {
						want = counterStart
					}
					if n := binary.LittleEndian.Uint64(outPage64(got, pl.counter)); n != want {
						t.Errorf("%s: counter %#x, want %#x", pname, n, want)
					}
					put64(outPage64(got, pl.counter), binary.LittleEndian.Uint64(outPage64(native, pl.counter)))
					if !fromEntry {
						// The trampoline's pushfq word, 136 bytes below the
						// entry rsp: below the red zone, free for it.
						w := hStack + 0x800 - 136 - hStack
						copy(got.Stack[w:w+8], native.Stack[w:w+8])
					}
					compare(t, pname, native, got)
				}
			}
		}
	}
	t.Logf("%d harness runs", runs)
}

// place copies a trampoline into the harness page at at.
func place(in *hIn, at uint64, code []byte) {
	switch {
	case at >= hFar:
		copy(in.Far[at-hFar:], code)
	case at >= hSlot:
		copy(in.Slot[at-hSlot:], code)
	default:
		copy(in.Code[at-hCode:], code)
	}
}

// page64 returns the 8 bytes at a (in the data or the far page) of a
// request.
func page64(in *hIn, a uint64) []byte {
	if a >= hFar {
		return in.Far[a-hFar:]
	}
	return in.Data[a-hData:]
}

func outPage64(out *hOut, a uint64) []byte {
	if a >= hFar {
		return out.Far[a-hFar:]
	}
	return out.Data[a-hData:]
}

// TestJumpMeaningDetects makes sure the comparison notices a wrong
// trampoline: one whose counter increment is dropped, and one that skips
// the displaced store.
func TestJumpMeaningDetects(t *testing.T) {
	h := startHarness(t)
	code, _ := decodeHex(rr(0, "488905", hData+0x88, ""))
	j, err := AnalyzeJump(code)
	if err != nil {
		t.Fatal(err)
	}
	mc := mcase{}
	in := startState(&mc, 0, hStack+0x800)
	copy(in.Code[insnAt-hCode:], code)
	in.Regs.Rip = insnAt
	native := h.run(t, in)
	tc, entry, err := j.Trampoline(insnAt, hSlot+0x40, hData+0xf00)
	if err != nil {
		t.Fatal(err)
	}
	// Skip the store: jump from the entry straight to the jump back.
	bad := append([]byte(nil), tc...)
	copy(bad[entry:], []byte{0xeb, byte(len(code) - 2)})
	sin := startState(&mc, 0, hStack+0x800)
	place(sin, hSlot+0x40, bad)
	sin.Regs.Rip = hSlot + 0x40 + uint64(entry)
	got := h.run(t, sin)
	if got.Regs.Rip != native.Regs.Rip || got.Data == native.Data {
		t.Fatalf("harness did not see the missing store: rip %#x / %#x", got.Regs.Rip, native.Regs.Rip)
	}
}

// TestTrampPC stops a trampoline run at every instruction boundary of its
// code (an int3 there), maps the thread back with PCAt (rip, rsp, and the
// flags saved in the prologue) and compares it with the native run
// stopped at that displaced instruction: the context a signal raised there
// must show.
func TestTrampPC(t *testing.T) {
	h := startHarness(t)
	runs, stops := 0, 0
	for _, c := range jumpCases() {
		code, _ := decodeHex(c.hex)
		j, err := AnalyzeJump(code)
		if err != nil {
			t.Fatalf("%s: %v", c.hex, err)
		}
		flags := c.flags
		if flags == nil {
			flags = []uint64{0, arithFlags}
		}
		for _, fl := range flags[:min(len(flags), 3)] {
			for _, at := range []uint64{hSlot + 0x40, hFar + 0x40} {
				counter := uint64(hData + 0xf00)
				if at >= hFar {
					counter = hFar + 0x800
				}
				tc, entry, n, err := j.trampoline(insnAt, at, counter)
				if err != nil {
					continue // rip-relative from the far page
				}
				mc := mcase{setup: c.setup}
				pos := 0
				for _, in := range decodeAll(t, tc[:n]) {
					x := pos
					pos += in.Len
					sin := startState(&mc, fl, hStack+0x800)
					copy(sin.Code[insnAt-hCode:], code)
					place(sin, at, tc)
					place(sin, at+uint64(x), []byte{0xcc})
					put64(page64(sin, counter), counterStart)
					sin.Regs.Rip = at
					got := h.run(t, sin)
					runs++
					if got.Sig != uint64(syscall.SIGTRAP) || got.Regs.Rip != at+uint64(x) {
						continue // another path
					}
					stops++
					pc, ok := j.PCAt(insnAt, at, x)
					name := fmt.Sprintf("%s (%s) flags %#x tramp %#x stopped at %d", c.hex, strings.Join(j.Asm, "; "), fl, at, x)
					if !ok || pc.Prologue != (x < entry) {
						t.Errorf("%s: PCAt %+v %v", name, pc, ok)
						continue
					}
					in := startState(&mc, fl, hStack+0x800)
					copy(in.Code[insnAt-hCode:], code)
					in.Code[insnAt-hCode+uint64(pc.Off)] = 0xcc
					in.Regs.Rip = insnAt
					native := h.run(t, in)
					runs++
					got.Regs.Rip = insnAt + uint64(pc.Off)
					got.Regs.R[4] += uint64(pc.RSPAdd)
					w := hStack + 0x800 - 136 - hStack
					if pc.Prologue && x == tEntry-len(tLeaUp)-len(tPopf) {
						got.Regs.Rflags = binary.LittleEndian.Uint64(got.Stack[w:]) // at popfq
					}
					copy(got.Stack[w:w+8], native.Stack[w:w+8])
					if pc.RSPAdd == 8 {
						v := native.Regs.R[4] - 8 - hStack
						copy(got.Stack[v:v+8], native.Stack[v:v+8])
					}
					put64(outPage64(got, counter), binary.LittleEndian.Uint64(outPage64(native, counter)))
					compare(t, name, native, got)
				}
			}
		}
	}
	if stops < 1000 {
		t.Errorf("only %d stops compared", stops)
	}
	t.Logf("%d harness runs, %d stops compared", runs, stops)
}
