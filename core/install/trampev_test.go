package install

import (
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestTrampolineEv decodes the event code back: the instructions in the
// order the top of trampev.go gives, their rip-relative operands at the
// counter, the flag, the head and the ring, the skip landing on the
// popfq, and the popf offset TrampolineEv returns.
func TestTrampolineEv(t *testing.T) {
	j, err := AnalyzeJump([]byte{0x55, 0x48, 0x89, 0xe5, 0x41, 0x57, 0xc3})
	if err != nil {
		t.Fatal(err)
	}
	const at = 0x500000
	ev := EvMem{Counter: 0x510008, Flag: 0x511008, Head: 0x512000, Ring: 0x513000, Mask: 0xffff, ID: 7}
	code, entry, popf, err := j.TrampolineEv(0x400000, at, ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(code) > MaxTrampEvSize {
		t.Fatalf("%d bytes, over %d", len(code), MaxTrampEvSize)
	}
	var asm []string
	targets := map[uint64]bool{}
	var skipTo uint64
	for pos := 0; pos < entry; {
		in, err := x86asm.Decode(code[pos:], 64)
		if err != nil {
			t.Fatalf("% x at %d: %v", code, pos, err)
		}
		next := uint64(at + pos + in.Len)
		for _, a := range in.Args {
			if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP {
				targets[uint64(int64(next)+m.Disp)] = true
			}
			if r, ok := a.(x86asm.Rel); ok {
				skipTo = uint64(int64(next) + int64(r))
			}
		}
		if pos == popf && in.Op != x86asm.POPFQ {
			t.Errorf("popf offset %d holds %v", popf, in)
		}
		asm = append(asm, strings.Fields(x86asm.GNUSyntax(in, 0, nil))[0])
		pos += in.Len
	}
	want := "lea pushfq lock cmpq je push push push push mov lock rdtsc shl or mov and shl lea add mov rdfsbase mov movq inc mov pop pop pop pop popfq lea"
	if got := strings.Join(asm, " "); got != want {
		t.Errorf("prologue:\n %s\nwant\n %s", got, want)
	}
	for _, a := range []uint64{ev.Counter, ev.Flag, ev.Head, ev.Ring} {
		if !targets[a] {
			t.Errorf("no rip-relative operand at %#x (have %v)", a, targets)
		}
	}
	if skipTo != at+uint64(popf) {
		t.Errorf("je lands at %#x, want the popfq at %#x", skipTo, at+popf)
	}
	// The rest: the relocated instructions and the jump back, as for
	// Trampoline.
	plain, pentry, _ := j.Trampoline(0x400000, at, ev.Counter)
	if got, want := len(code)-entry, len(plain)-pentry; got != want {
		t.Errorf("relocated part %d bytes, want %d as in Trampoline", got, want)
	}
	if _, ok := j.OrigAt(0x400000, at, at+uint64(entry)+1, &ev); !ok {
		t.Error("OrigAt misses the second relocated instruction")
	}
}

// TestTrampolineEvPerCPU decodes the per-CPU count back: rdpid, the slot
// arithmetic, the locked increment through the counter's base.
func TestTrampolineEvPerCPU(t *testing.T) {
	j, err := AnalyzeJump([]byte{0x55, 0x48, 0x89, 0xe5, 0x41, 0x57, 0xc3})
	if err != nil {
		t.Fatal(err)
	}
	const at = 0x500000
	ev := EvMem{Counter: 0x510000, Flag: 0x520008, Head: 0x521000, Ring: 0x522000, Mask: 0xffff, ID: 3, PerCPU: true}
	code, entry, _, err := j.TrampolineEv(0x400000, at, ev)
	if err != nil {
		t.Fatal(err)
	}
	var asm []string
	base := false
	for pos := 0; pos < entry; {
		if code[pos] == 0xf3 && code[pos+1] == 0x0f && code[pos+2] == 0xc7 && code[pos+3] == 0xf8 {
			asm = append(asm, "rdpid") // x86asm does not know rdpid
			pos += 4
			continue
		}
		in, err := x86asm.Decode(code[pos:], 64)
		if err != nil {
			t.Fatalf("% x at %d: %v", code, pos, err)
		}
		for _, a := range in.Args {
			if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP && uint64(int64(at+pos+in.Len)+m.Disp) == ev.Counter {
				base = true
			}
		}
		asm = append(asm, strings.Fields(x86asm.GNUSyntax(in, 0, nil))[0])
		pos += in.Len
		if len(asm) == 11 {
			break
		}
	}
	if got, want := strings.Join(asm, " "), "lea pushfq push push rdpid and shl lea lock pop pop"; got != want {
		t.Errorf("prologue %q, want %q", got, want)
	}
	if !base {
		t.Error("no lea of the counter's base")
	}
}
