package install

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// realEntries returns the first bytes of up to n function symbols of the
// ELF file at path (read only), for seeds from real code.
func realEntries(path string, n int) [][]byte {
	f, err := elf.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	syms, _ := f.Symbols()
	if len(syms) == 0 {
		syms, _ = f.DynamicSymbols()
	}
	var funcs []elf.Symbol
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 && s.Size != 0 {
			funcs = append(funcs, s)
		}
	}
	var out [][]byte
	step := max(1, len(funcs)/n)
	for i := 0; i < len(funcs) && len(out) < n; i += step {
		s := funcs[i]
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && p.Flags&elf.PF_X != 0 && s.Value >= p.Vaddr && s.Value-p.Vaddr < p.Filesz {
				b := make([]byte, min(s.Size, 32))
				if k, _ := p.ReadAt(b, int64(s.Value-p.Vaddr)); k == len(b) {
					out = append(out, b)
				}
			}
		}
	}
	return out
}

// FuzzJump fuzzes AnalyzeJump and Trampoline: no panic; an accepted plan
// displaces whole instructions covering 5 to 19 bytes, and its trampoline,
// from a near and a far address, decodes back as whole instructions that
// are the prologue and then each displaced instruction relocated with the
// same effect (checkTramp), within MaxTrampSize.
func FuzzJump(f *testing.F) {
	for _, c := range jumpCases() {
		b, _ := decodeHex(c.hex)
		f.Add(b)
	}
	for _, c := range meaningCases() {
		b, _ := decodeHex(c.hex + "9090909090")
		f.Add(b)
	}
	// (The test binary itself is linked without a symbol table.)
	for _, path := range []string{testfix.GoTarget(f), "/usr/bin/bash", "/usr/bin/perl"} {
		for _, b := range realEntries(path, 100) {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, code []byte) {
		j, err := AnalyzeJump(code)
		if err != nil {
			if !errors.Is(err, ErrRefused) || RefusalReason(err) == "" {
				t.Fatalf("AnalyzeJump(% x): %v", code, err)
			}
			return
		}
		if j.Len < JumpLen || j.Len > 4+MaxInsnLen || !bytes.Equal(j.Orig, code[:j.Len]) || len(j.Asm) != len(j.insns) {
			t.Fatalf("AnalyzeJump(% x): bad plan %v", code, j)
		}
		pos := 0
		for _, in := range j.insns {
			if in.off != pos || !bytes.Equal(in.insn, code[pos:pos+len(in.insn)]) {
				t.Fatalf("%v: instruction at +%d not whole", j, pos)
			}
			pos += len(in.insn)
		}
		const site = 0x555555556000
		for _, at := range []uint64{site + 1<<20, site - 1<<30 + 0x48, site + 1<<40} {
			tc, entry, n, err := j.trampoline(site, at, at+0x1000)
			if err != nil {
				if errors.Is(err, ErrSlotRange) && hasRip(j) {
					continue
				}
				t.Fatalf("%v: Trampoline(%#x): %v", j, at, err)
			}
			if len(tc) > MaxTrampSize || entry != tEntry {
				t.Fatalf("%v: trampoline %d bytes, entry %d", j, len(tc), entry)
			}
			checkTramp(t, j, site, at, tc, entry, n)
			prev := 0
			for off := 0; off < n; off++ {
				pc, ok := j.PCAt(site, at, off)
				if !ok || pc.Prologue != (off < entry) || pc.Off < prev || pc.Off > j.Len || off == entry && pc.Off != 0 {
					t.Fatalf("%v: PCAt(%d) = %+v %v", j, off, pc, ok)
				}
				prev = pc.Off
			}
			if _, ok := j.PCAt(site, at, n); ok {
				t.Fatalf("%v: PCAt past the code", j)
			}
		}
	})
}

func hasRip(j *JumpPlan) bool {
	for _, in := range j.insns {
		if in.kind == jPlain && in.dispOff >= 0 {
			return true
		}
	}
	return false
}

// checkTramp decodes the trampoline tc at at for j at site and checks it
// instruction by instruction: the prologue, and each displaced instruction
// relocated to the same effect.
func checkTramp(t *testing.T, j *JumpPlan, site, at uint64, tc []byte, entry, n int) {
	t.Helper()
	pos := 0
	next := func() x86asm.Inst {
		t.Helper()
		if pos >= n {
			t.Fatalf("%v: trampoline % x ends at %d", j, tc, pos)
		}
		if isEndbr(tc[pos:]) {
			pos += 4
			return x86asm.Inst{Op: x86asm.NOP, Len: 4}
		}
		in, err := decode(tc[pos:n]) // x86asm misreads vzeroupper
		if err != nil {
			t.Fatalf("%v: trampoline % x: at %d: %v", j, tc, pos, err)
		}
		pos += in.Len
		return in
	}
	// jumpTo decodes a jmp and returns its target.
	jumpTo := func() uint64 {
		t.Helper()
		start := pos
		in := next()
		if in.Op != x86asm.JMP {
			t.Fatalf("%v: trampoline % x: %v at %d, want a jmp", j, tc, in, start)
		}
		return branchTarget(t, tc, at, start, in)
	}
	for _, want := range []string{"lea -0x80(%rsp),%rsp", "pushfq", "", "popfq", "lea 0x80(%rsp),%rsp"} {
		in := next()
		got := x86asm.GNUSyntax(in, 0, nil)
		if want == "" {
			if in.Op != x86asm.INC || !strings.HasPrefix(got, "lock incq ") {
				t.Fatalf("%v: prologue %q, want lock incq", j, got)
			}
			m := in.Args[0].(x86asm.Mem)
			if c := at + uint64(pos) + uint64(m.Disp); m.Base != x86asm.RIP || c != at+0x1000 {
				t.Fatalf("%v: counter %#x, want %#x", j, c, at+0x1000)
			}
			continue
		}
		if got != want {
			t.Fatalf("%v: prologue %q, want %q", j, got, want)
		}
	}
	if pos != entry {
		t.Fatalf("%v: entry %d, prologue ends at %d", j, entry, pos)
	}
	for _, d := range j.insns {
		start := pos
		target := site + uint64(d.target)
		switch d.kind {
		case jPlain, jRet:
			in := next()
			got := tc[start:pos]
			if len(got) != len(d.insn) {
				t.Fatalf("%v: %s relocated to % x", j, jumpAsm(d), got)
			}
			if d.dispOff < 0 {
				if !bytes.Equal(got, d.insn) {
					t.Fatalf("%v: %s relocated to % x", j, jumpAsm(d), got)
				}
				continue
			}
			g, w := append([]byte(nil), got...), append([]byte(nil), d.insn...)
			copy(g[d.dispOff:], "\x00\x00\x00\x00")
			copy(w[d.dispOff:], "\x00\x00\x00\x00")
			nt := at + uint64(pos) + uint64(int32(binary.LittleEndian.Uint32(got[d.dispOff:])))
			if !bytes.Equal(g, w) || nt != target || in.Op != mustDecode(d.insn).Op {
				t.Fatalf("%v: %s relocated to % x (target %#x, want %#x)", j, jumpAsm(d), got, nt, target)
			}
		case jJcc:
			in := next()
			op := jccOps[d.cc]
			if in.Len == 6 && in.Op == op {
				if bt := branchTarget(t, tc, at, start, in); bt != target {
					t.Fatalf("%v: jcc to %#x, want %#x", j, bt, target)
				}
				continue
			}
			if in.Op != jccOps[d.cc^1] || in.Len != 2 || in.Args[0] != x86asm.Rel(6) {
				t.Fatalf("%v: jcc relocated to % x", j, tc[start:pos])
			}
			if bt := jumpTo(); bt != target {
				t.Fatalf("%v: jcc to %#x, want %#x", j, bt, target)
			}
		case jCall:
			ret := site + uint64(d.off+len(d.insn))
			a, b := next(), next()
			if a.Op != x86asm.PUSH || b.Op != x86asm.MOV ||
				uint32(a.Args[0].(x86asm.Imm)) != uint32(ret) || uint32(b.Args[1].(x86asm.Imm)) != uint32(ret>>32) ||
				!isMem(b.Args[0], x86asm.RSP, 4) {
				t.Fatalf("%v: call relocated to %v; %v", j, a, b)
			}
			if bt := jumpTo(); bt != target {
				t.Fatalf("%v: call to %#x, want %#x", j, bt, target)
			}
		case jJmp:
			if bt := jumpTo(); bt != target {
				t.Fatalf("%v: jmp to %#x, want %#x", j, bt, target)
			}
		}
	}
	if !j.EndsInBranch() {
		if bt := jumpTo(); bt != site+uint64(j.Len) {
			t.Fatalf("%v: jumps back to %#x, want %#x", j, bt, site+uint64(j.Len))
		}
	}
	if pos != n {
		t.Fatalf("%v: trampoline % x: %d bytes of code after the last instruction", j, tc, n-pos)
	}
}

// branchTarget returns the target of the jmp or jcc at offset start of tc
// (placed at at): rel32, or through the pool (which must be aligned).
func branchTarget(t *testing.T, tc []byte, at uint64, start int, in x86asm.Inst) uint64 {
	t.Helper()
	end := uint64(start + in.Len)
	switch a := in.Args[0].(type) {
	case x86asm.Rel:
		return at + end + uint64(int64(a))
	case x86asm.Mem:
		p := int64(end) + a.Disp
		if a.Base != x86asm.RIP || p < 0 || int(p)+8 > len(tc) || (at+uint64(p))%8 != 0 {
			t.Fatalf("trampoline % x: bad absolute jump at %d", tc, start)
		}
		return binary.LittleEndian.Uint64(tc[p:])
	}
	t.Fatalf("trampoline % x: %v at %d", tc, in, start)
	return 0
}

func mustDecode(b []byte) x86asm.Inst {
	in, _ := decode(b)
	return in
}

func isMem(a x86asm.Arg, base x86asm.Reg, disp int64) bool {
	m, ok := a.(x86asm.Mem)
	return ok && m.Base == base && m.Disp == disp && m.Index == 0 && m.Segment == 0
}
