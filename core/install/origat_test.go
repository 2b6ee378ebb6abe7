package install

import (
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestTrampPrologue: every instruction boundary of a trampoline's
// counting prologue is one TrampPrologue knows, with the stack and count
// state the instructions before it leave (lea -128 moves rsp down, pushfq
// 8 more, the locked increment counts, popfq and lea +128 undo), and no
// offset between boundaries is one.
func TestTrampPrologue(t *testing.T) {
	j, err := AnalyzeJump([]byte{0x55, 0x48, 0x89, 0xe5, 0x41, 0x57, 0xc3}) // push %rbp; mov %rsp,%rbp; push %r15
	if err != nil {
		t.Fatal(err)
	}
	code, entry, err := j.Trampoline(0x400000, 0x500000, 0x510000)
	if err != nil {
		t.Fatal(err)
	}
	type state struct {
		below   uint64
		counted bool
	}
	st := state{}
	bounds := map[int]state{0: st}
	for _, in := range decodeAll(t, code[:entry]) {
		switch in.Op {
		case x86asm.LEA:
			if in.Args[1].(x86asm.Mem).Disp < 0 {
				st.below += 128
			} else {
				st.below -= 128
			}
		case x86asm.PUSHFQ:
			st.below += 8
		case x86asm.POPFQ:
			st.below -= 8
		case x86asm.INC:
			st.counted = true
		default:
			t.Fatalf("unexpected %v in the prologue", in)
		}
		off := insnOffset(decodeAll(t, code[:entry]), len(bounds))
		bounds[off] = st
	}
	for off := 0; off <= entry; off++ {
		below, counted, ok := TrampPrologue(off)
		want, isBound := bounds[off]
		if ok != isBound || (ok && (below != want.below || counted != want.counted)) {
			t.Errorf("offset %d: TrampPrologue = %d %v %v, want %d %v %v", off, below, counted, ok, want.below, want.counted, isBound)
		}
	}
	if st != (state{0, true}) {
		t.Errorf("state at the entry: %+v", st)
	}
	// OrigAt: the prologue is at the site, each relocated instruction at
	// its original address, anything else nowhere.
	insns := decodeAll(t, code[entry:])
	wantOrig := []uint64{0x400000, 0x400001, 0x400004}
	for i, w := range wantOrig {
		rip := 0x500000 + uint64(entry+insnOffset(insns, i))
		if got, ok := j.OrigAt(0x400000, 0x500000, rip); !ok || got != w {
			t.Errorf("OrigAt(%#x) = %#x %v, want %#x", rip, got, ok, w)
		}
	}
	if got, ok := j.OrigAt(0x400000, 0x500000, 0x500003); !ok || got != 0x400000 {
		t.Errorf("OrigAt in the prologue = %#x %v", got, ok)
	}
	if _, ok := j.OrigAt(0x400000, 0x500000, 0x500000+uint64(entry)+2); ok {
		t.Error("OrigAt inside a relocated instruction is a boundary")
	}
}
