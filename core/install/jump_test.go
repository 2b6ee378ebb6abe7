package install

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestTrampTemplates decodes every byte template of a trampoline back with
// x86asm and checks it is the instruction its comment names.
func TestTrampTemplates(t *testing.T) {
	for _, c := range []struct {
		name string
		code []byte
		want string
	}{
		{"lea down", tLeaDown[:], "lea -0x80(%rsp),%rsp"},
		{"pushfq", tPushf[:], "pushfq"},
		{"lock inc", append(tLockInc[:], 0x10, 0, 0, 0), "lock incq 0x10(%rip)"},
		{"popfq", tPopf[:], "popfq"},
		{"lea up", tLeaUp[:], "lea 0x80(%rsp),%rsp"},
		{"push imm", append(tPushImm[:], 0x78, 0x56, 0x34, 0x12), "pushq $0x12345678"},
		{"mov high", append(tMovHigh[:], 0x78, 0x56, 0x34, 0x12), "movl $0x12345678,0x4(%rsp)"},
		{"jmp rel32", append(tJmp32[:], 0x10, 0, 0, 0), "jmpq .+0x10"},
		{"jmp abs", append(tJmpAbs[:], 0x10, 0, 0, 0), "jmpq *0x10(%rip)"},
	} {
		in, err := x86asm.Decode(c.code, 64)
		if err != nil || in.Len != len(c.code) {
			t.Errorf("%s: % x decodes to %v (len %d), %v", c.name, c.code, in, in.Len, err)
			continue
		}
		if got := x86asm.GNUSyntax(in, 0, nil); got != c.want {
			t.Errorf("%s: % x is %q, want %q", c.name, c.code, got, c.want)
		}
	}
	// Every jcc form the relocator writes: rel32, and the inverted rel8
	// over the absolute jump.
	for cc := byte(0); cc < 16; cc++ {
		j, err := AnalyzeJump([]byte{0x90, 0x90, 0x90, 0x70 | cc, 0x10})
		if err != nil {
			t.Fatal(err)
		}
		for _, at := range []uint64{0x10000, 0x7f0000000000} {
			code, entry, n, err := j.trampoline(0x10000, at, at+0x800)
			if err != nil {
				t.Fatal(err)
			}
			insns := decodeAll(t, code[:n])
			if len(insns) < 9 {
				t.Fatalf("cc %d: % x: %d instructions", cc, code, len(insns))
			}
			jcc := insns[8] // after the prologue (5) and the 3 nops
			if off := insnOffset(insns, 8); off != entry+3 {
				t.Fatalf("cc %d: jcc at %d, want %d", cc, off, entry+3)
			}
			want := x86asm.Op(0)
			if at == 0x10000 {
				want = jccOps[cc]
				if jcc.Len != 6 {
					t.Errorf("cc %d near: % x: jcc len %d", cc, code, jcc.Len)
				}
			} else {
				want = jccOps[cc^1]
				if jcc.Len != 2 || insns[9].Op != x86asm.JMP || insns[9].Len != 6 {
					t.Errorf("cc %d far: % x: not an inverted jcc over jmp *(%%rip)", cc, code)
				}
			}
			if jcc.Op != want {
				t.Errorf("cc %d at %#x: jcc %v, want %v", cc, at, jcc.Op, want)
			}
		}
	}
	// An unaligned counter.
	if _, _, err := (&JumpPlan{}).Trampoline(0x10000, 0x20000, 0x20804); !errors.Is(err, ErrRefused) {
		t.Errorf("unaligned counter: %v", err)
	}
	// The jump site itself.
	b, err := JumpInsn(0x401000, 0x401000+5+0x1234)
	if err != nil {
		t.Fatal(err)
	}
	if in, err := x86asm.Decode(b, 64); err != nil || in.Len != 5 || in.Op != x86asm.JMP || in.Args[0] != x86asm.Rel(0x1234) {
		t.Errorf("JumpInsn: % x: %v %v", b, in, err)
	}
	if _, err := JumpInsn(0x401000, 0x401000+5+1<<31); !errors.Is(err, ErrSlotRange) {
		t.Errorf("JumpInsn out of reach: %v", err)
	}
	if _, err := JumpInsn(0x401000+1<<31-5, 0x401000); err != nil {
		t.Errorf("JumpInsn -2^31+5: %v", err)
	}
}

var jccOps = [16]x86asm.Op{x86asm.JO, x86asm.JNO, x86asm.JB, x86asm.JAE, x86asm.JE, x86asm.JNE, x86asm.JBE, x86asm.JA,
	x86asm.JS, x86asm.JNS, x86asm.JP, x86asm.JNP, x86asm.JL, x86asm.JGE, x86asm.JLE, x86asm.JG}

// decodeAll decodes code as whole instructions.
func decodeAll(t testing.TB, code []byte) []x86asm.Inst {
	t.Helper()
	var out []x86asm.Inst
	for pos := 0; pos < len(code); {
		if isEndbr(code[pos:]) {
			out = append(out, x86asm.Inst{Op: x86asm.NOP, Len: 4})
			pos += 4
			continue
		}
		in, err := decode(code[pos:])
		if err != nil {
			t.Fatalf("% x: at %d: %v", code, pos, err)
		}
		pos += in.Len
		out = append(out, in)
	}
	return out
}

func insnOffset(insns []x86asm.Inst, i int) int {
	n := 0
	for _, in := range insns[:i] {
		n += in.Len
	}
	return n
}

// TestAnalyzeJump checks the decisions and reasons on hand-made code.
func TestAnalyzeJump(t *testing.T) {
	for _, c := range []struct {
		hex    string
		len    int    // accepted: the displaced length
		reason string // refused: a part of the reason
	}{
		{"554889e5", 0, "function too short for a jump (4 bytes)"},
		{"31c0c3", 0, "function too short for a jump (ret after 3 bytes)"},
		{"554889e54883ec10", 8, ""},
		{"f30f1efa55", 5, ""},
		{"f30f1efa4157", 6, ""},
		{"e800000000", 5, ""},
		{"55e8000000004889e5", 6, ""},
		{"e8000000005d", 5, ""},
		{"4883ec08e800000000", 9, ""},
		{"53e8000000005b", 6, ""},
		{"5053e800000000", 7, ""},
		{"90e8000000", 0, "undecodable bytes at +1"},
		{"4883c408c3", 5, ""},
		{"90909090f3c3", 6, ""},
		{"e900010000", 5, ""},
		{"4889e5eb10", 5, ""},
		{"eb03909090", 0, "function too short for a jump (jmp after 2 bytes)"},
		{"7403909090", 5, ""}, // to +5: just after the range
		{"7402909090", 0, "branch into the displaced range (jcc at +0 to +4)"},
		{"74fe909090", 5, ""}, // to +0: a new hit
		{"9090900f05", 0, "syscall in the displaced range"},
		{"0f05909090", 0, "syscall in the displaced range"},
		{"cc90909090", 0, "int3 in the displaced range"},
		{"cd80909090", 0, "int in the displaced range"},
		{"0f0b909090", 0, "ud2 in the displaced range"},
		{"f490909090", 0, "hlt in the displaced range"},
		{"9c5b9d9090", 0, "pushf/popf in the displaced range"},
		{"50539d9090", 0, "pushf/popf in the displaced range"},
		{"ffe0909090", 0, "indirect jmp in the displaced range"},
		{"ffd0909090", 0, "indirect call in the displaced range"},
		{"ff2500000000", 0, "indirect jmp in the displaced range"},
		{"e2fe909090", 0, "loop in the displaced range"},
		{"66eb03909090", 0, "size prefix on a branch"},
		{"6774039090", 0, "size prefix on a branch"},
		{"488b0500000000", 7, ""},
		{"488b05f9ffffff", 0, "rip-relative operand at +0 reads the displaced bytes"},
		{"488d05f9ffffff", 7, ""},                                                       // lea of the function's own address: nothing read
		{"90488b05b9ffffff", 0, "rip-relative operand at +1 reads the displaced bytes"}, // from -63: may overlap
		{"90488b05b8ffffff", 8, ""},                                                     // from -64: 64 bytes at most, no overlap
		{"64488b042528000000", 9, ""},
		{"0f1f440000", 5, ""},
		{"06909090", 0, "undecodable bytes at +0"},
	} {
		code, err := decodeHex(c.hex)
		if err != nil {
			t.Fatal(err)
		}
		j, err := AnalyzeJump(code)
		if c.reason == "" {
			if err != nil {
				t.Errorf("%s: %v", c.hex, err)
			} else if j.Len != c.len || !bytes.Equal(j.Orig, code[:c.len]) || len(j.Asm) != len(j.insns) {
				t.Errorf("%s: %v: len %d, want %d", c.hex, j, j.Len, c.len)
			} else if call := strings.HasPrefix(j.Asm[len(j.Asm)-1], "call"); j.EmulatesCall() != call {
				t.Errorf("%s: %v: EmulatesCall %v", c.hex, j, j.EmulatesCall())
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: accepted (%v), want %q", c.hex, j, c.reason)
			continue
		}
		if !errors.Is(err, ErrRefused) || !strings.Contains(RefusalReason(err), c.reason) {
			t.Errorf("%s: %v, want ErrRefused with %q", c.hex, err, c.reason)
		}
	}
}
