package objfile

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestFixtures builds every fixture once and runs the table-driven checks
// over them: symbol offsets against readelf and nm, location errors, step-over
// classes and refusals, instruction boundaries against objdump, and the corpus
// run.
func TestFixtures(t *testing.T) {
	fx := buildFixtures(t)
	for _, f := range fx {
		t.Run("symbols/"+f.name, func(t *testing.T) { testSymbols(t, f) })
	}
	for _, f := range fx {
		if f.prog {
			t.Run("classes/"+f.name, func(t *testing.T) { testClasses(t, f) })
		}
	}
	t.Run("errors", func(t *testing.T) { testResolveErrors(t, fx[1]) })
	t.Run("boundary/"+fx[1].name, func(t *testing.T) { testBoundary(t, fx[1]) })
	t.Run("boundary/"+fx[4].name, func(t *testing.T) { testBoundary(t, fx[4]) })
	for _, f := range []*fixture{fx[1], fx[3], fx[4], fx[5], fx[6]} {
		t.Run("starts/"+f.name, func(t *testing.T) { testStarts(t, f) })
		t.Run("fdes/"+f.name, func(t *testing.T) { testFDEs(t, f) })
	}
	t.Run("corpus", func(t *testing.T) {
		for _, f := range fx {
			corpus(t, f.name, f.path)
		}
	})
}

// testSymbols checks Resolve of every function symbol against the offset
// computed from readelf's symbols and segments (and nm's values), and that
// Symbolize goes back.
func testSymbols(t *testing.T, fx *fixture) {
	f := openT(t, fx.path)
	segs := readelfSegments(t, fx.path)
	syms := readelfFuncs(t, fx.path)
	nmv := nmValues(t, fx.path, fx.stripped)
	values := make(map[string]map[uint64]bool)
	for _, s := range syms {
		if values[s.name] == nil {
			values[s.name] = make(map[uint64]bool)
		}
		values[s.name][s.value] = true
	}
	checked := 0
	for _, s := range syms {
		if len(values[s.name]) != 1 || s.value == 0 {
			continue // ambiguous name: Resolve may refuse it
		}
		want, ok := fileOffset(segs, s.value)
		if !ok {
			continue
		}
		if vs := nmv[s.name]; len(vs) == 0 || vs[0] != s.value {
			t.Errorf("%s: nm says %#x, readelf %#x", s.name, vs, s.value)
		}
		got, err := f.Resolve(s.name)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %#x, %v; readelf: value %#x -> offset %#x", s.name, got, err, s.value, want)
			continue
		}
		checked++
		if s.size > 1 {
			loc := s.name + "+0x1"
			if got, err := f.Resolve(loc); err != nil || got != want+1 {
				t.Errorf("Resolve(%q) = %#x, %v, want %#x", loc, got, err, want+1)
			}
			loc = s.name + "+" + strconv.FormatUint(s.size-1, 10)
			if got, err := f.Resolve(loc); err != nil || got != want+s.size-1 {
				t.Errorf("Resolve(%q) = %#x, %v, want %#x", loc, got, err, want+s.size-1)
			}
		}
		if s.size > 0 {
			loc := s.name + "+" + strconv.FormatUint(s.size, 10)
			if _, err := f.Resolve(loc); !errors.Is(err, ErrPastSymbol) {
				t.Errorf("Resolve(%q) = %v, want ErrPastSymbol", loc, err)
			}
		}
		// Offsets resolve to themselves, and Symbolize goes back.
		for _, loc := range []string{"0x" + strconv.FormatUint(want, 16), strconv.FormatUint(want, 10)} {
			if got, err := f.Resolve(loc); err != nil || got != want {
				t.Errorf("Resolve(%q) = %#x, %v", loc, got, err)
			}
		}
		sym := f.Symbolize(want)
		if got, err := f.Resolve(sym); err != nil || got != want {
			t.Errorf("Resolve(Symbolize(%#x) = %q) = %#x, %v", want, sym, got, err)
		}
	}
	if checked < 3 && !(fx.stripped && fx.prog) { // a stripped PIE exports no functions
		t.Fatalf("only %d symbols checked", checked)
	}
	t.Logf("%s: %d function symbols agree with readelf and nm", fx.name, checked)

	if fx.stripped {
		base := openT(t, fx.base.path)
		// Only .dynsym survives strip: exported functions still resolve to
		// the same offsets, static ones are gone.
		if strings.HasPrefix(fx.name, "lib") {
			for _, name := range []string{"lib_add", "lib_sum", "lib_asm"} {
				a, err1 := f.Resolve(name)
				b, err2 := base.Resolve(name)
				if err1 != nil || err2 != nil || a != b {
					t.Errorf("%s: stripped %#x, %v; unstripped %#x, %v", name, a, err1, b, err2)
				}
			}
			if _, err := f.Resolve("helper"); !errors.Is(err, ErrNoSymbol) {
				t.Errorf("stripped Resolve(helper) = %v, want ErrNoSymbol", err)
			}
		} else {
			off, err := base.Resolve("cls_push_rbx")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Resolve("cls_push_rbx"); !errors.Is(err, ErrNoSymbol) {
				t.Errorf("stripped Resolve(cls_push_rbx) = %v, want ErrNoSymbol", err)
			}
			if s := f.Symbolize(off); s != "0x"+strconv.FormatUint(off, 16) {
				t.Errorf("stripped Symbolize(%#x) = %q", off, s)
			}
		}
	}
}

// classCase is the expected plan (class) or refusal (reason substring) of the
// first instruction of a classes.h function.
type classCase struct {
	loc    string
	class  string // "" for a refusal
	reason string // substring of the error
	err    error
	// stripped: the substring of the error on a stripped build, where
	// the case is refused for want of a known instruction start.
	stripped string
}

var classCases = []classCase{
	{loc: "cls_nop", class: "nop"},
	{loc: "cls_nopl", class: "nop"},
	{loc: "cls_endbr64", class: "endbr64"},
	{loc: "cls_push_rbx", class: "push"},
	{loc: "cls_push_r12", class: "push"},
	{loc: "cls_push_rbx+1", class: "slot"}, // pop %rbx
	{loc: "cls_mov", class: "mov"},
	{loc: "cls_mov32", class: "mov"},
	{loc: "cls_lea", class: "lea"},
	{loc: "cls_lea_rip", class: "lea"},
	{loc: "cls_sub_rsp", class: "addsub-rsp"},
	{loc: "cls_sub_rsp+4", class: "addsub-rsp"},
	{loc: "cls_add_rsp", class: "addsub-rsp"},
	{loc: "cls_jmp", class: "jmp"},
	{loc: "cls_jmp32", class: "jmp"},
	{loc: "cls_call", class: "call"},
	{loc: "cls_jcc", class: "jcc"},
	{loc: "cls_jcc32", class: "jcc"},
	{loc: "cls_call_reg", class: "call-indirect"},
	{loc: "cls_call_rip", class: "call-indirect"},
	{loc: "cls_jmp_reg", class: "jmp-indirect"},
	{loc: "cls_jmp_rip", class: "jmp-indirect"},
	{loc: "cls_ret", class: "ret"},
	{loc: "cls_loop", class: "loop"},
	{loc: "cls_jrcxz", class: "loop"},
	{loc: "cls_slot_imm", class: "slot"},
	{loc: "cls_slot_xor", class: "slot"},
	{loc: "cls_slot_load", class: "slot-riprel"},
	{loc: "cls_slot_store", class: "slot-riprel"},
	{loc: "cls_slot_cmp", class: "slot-riprel"},
	{loc: "cls_slot_andn", class: "slot-riprel"},
	{loc: "cls_slot_push16", class: "slot"},
	{loc: "cls_slot_fs", class: "slot"},
	{loc: "ref_int3", reason: "int3", err: install.ErrRefused},
	{loc: "ref_int80", reason: "software interrupt", err: install.ErrRefused},
	{loc: "ref_icebp", reason: "icebp", err: install.ErrRefused},
	{loc: "ref_hlt", reason: "hlt", err: install.ErrRefused},
	{loc: "ref_cli", reason: "interrupt flag", err: install.ErrRefused},
	{loc: "ref_sti", reason: "interrupt flag", err: install.ErrRefused},
	{loc: "ref_syscall", reason: "system call", err: install.ErrRefused},
	{loc: "ref_sysenter", reason: "system call", err: install.ErrRefused},
	{loc: "ref_ud2", reason: "undefined instruction", err: install.ErrRefused},
	{loc: "ref_in", reason: "port I/O", err: install.ErrRefused},
	{loc: "ref_out", reason: "port I/O", err: install.ErrRefused},
	{loc: "ref_insb", reason: "port I/O", err: install.ErrRefused},
	{loc: "ref_outsb", reason: "port I/O", err: install.ErrRefused},
	{loc: "ref_iret", reason: "interrupt return", err: install.ErrRefused},
	{loc: "ref_lock", reason: "lock prefix", err: install.ErrRefused},
	{loc: "ref_es", reason: "es segment prefix", err: install.ErrRefused},
	{loc: "ref_cs", reason: "cs segment prefix", err: install.ErrRefused},
	{loc: "ref_ss", reason: "ss segment prefix", err: install.ErrRefused},
	{loc: "ref_ds", reason: "ds segment prefix", err: install.ErrRefused},
	{loc: "ref_notrack", reason: "ds segment prefix", err: install.ErrRefused},
	{loc: "ref_movss", reason: "mov to ss", err: install.ErrRefused},
	{loc: "ref_ljmp", reason: "far jump", err: install.ErrRefused},
	{loc: "ref_lcall", reason: "far jump", err: install.ErrRefused},
	{loc: "ref_xbegin", reason: "relative abort", err: install.ErrRefused},
	{loc: "ref_bad", reason: "undecodable", err: install.ErrRefused},
	{loc: "ref_into", reason: "undecodable", err: install.ErrRefused},
	{loc: "bnd_movabs", class: "slot"},
	{loc: "bnd_movabs+1", reason: "inside the 10-byte instruction at bnd_movabs+0x0", err: ErrNotBoundary},
	{loc: "bnd_movabs+9", reason: "inside the 10-byte instruction", err: ErrNotBoundary},
	{loc: "bnd_movabs+10", class: "nop"},
	{loc: "bnd_movabs+11", class: "ret"},
	{loc: "nosize", class: "nop", stripped: "no function symbol, PLT entry or unwind entry (.eh_frame) covers it"},
}

// testClasses checks the plan or refusal of every classes.h function. On a
// stripped build the offsets come from the unstripped one.
func testClasses(t *testing.T, fx *fixture) {
	f := openT(t, fx.path)
	rf := f
	if fx.stripped {
		rf = openT(t, fx.base.path)
	}
	for _, c := range classCases {
		off, err := rf.Resolve(c.loc)
		if err != nil {
			t.Errorf("Resolve(%q): %v", c.loc, err)
			continue
		}
		p, err := f.Analyze(off)
		if fx.stripped && c.stripped != "" {
			// No symbol, no unwind entry: where instructions start is
			// unknown, so nothing is accepted there.
			if !errors.Is(err, ErrNotBoundary) || !strings.Contains(err.Error(), c.stripped) {
				t.Errorf("%s (stripped): Analyze = %v, %v; want %v with %q", c.loc, p, err, ErrNotBoundary, c.stripped)
			}
			continue
		}
		if c.class != "" {
			if err != nil {
				t.Errorf("%s: Analyze: %v, want class %s", c.loc, err, c.class)
			} else if p.Class != c.class {
				t.Errorf("%s: class %s (%v), want %s", c.loc, p.Class, p, c.class)
			} else if p.Offset != off || p.Len != len(p.Insn) {
				t.Errorf("%s: plan %+v at offset %#x", c.loc, p, off)
			}
			continue
		}
		reason := c.reason
		if fx.stripped {
			reason, _, _ = strings.Cut(reason, " at ") // no symbol to name
		}
		if !errors.Is(err, c.err) || !strings.Contains(err.Error(), reason) {
			t.Errorf("%s: Analyze = %v, %v; want %v with %q", c.loc, p, err, c.err, c.reason)
		}
		if !fx.stripped && err != nil && !strings.Contains(err.Error(), strings.Split(c.loc, "+")[0]) {
			t.Errorf("%s: error %q does not name the location", c.loc, err)
		}
	}
}

func testResolveErrors(t *testing.T, fx *fixture) {
	f := openT(t, fx.path)
	st, err := os.Stat(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	nop, err := f.Resolve("cls_nop")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		loc  string
		want uint64
		err  error
	}{
		{"cls_nop", nop, nil},
		{"cls_nop+1", nop + 1, nil},
		{"cls_nop+0x1", nop + 1, nil},
		{"cls_nop+0X1", nop + 1, nil},
		{"cls_nop+01", nop + 1, nil},                 // octal 1
		{"0" + strconv.FormatUint(nop, 8), nop, nil}, // a leading 0 is octal, as in uprobe_events
		{"00" + strconv.FormatUint(nop, 8), nop, nil},
		{"08", 0, ErrSyntax}, // not octal, and never silently decimal
		{"0" + strconv.FormatUint(nop, 10) + "9", 0, ErrSyntax},
		{"cls_nop+09", 0, ErrSyntax},
		{"0x" + strconv.FormatUint(nop, 16), nop, nil},
		{"0X" + strings.ToUpper(strconv.FormatUint(nop, 16)), nop, nil},
		{strconv.FormatUint(nop, 10), nop, nil},
		{"nosize", 0, nil},
		{"cls_nop+2", 0, ErrPastSymbol},
		{"cls_nop+0xffffffffffffffff", 0, ErrPastSymbol},
		{"nosize+1", 0, ErrPastSymbol},
		{"", 0, ErrSyntax},
		{"0x", 0, ErrSyntax},
		{"0xg", 0, ErrSyntax},
		{"12abc", 0, ErrSyntax},
		{"1_000", 0, ErrSyntax},
		{"0x1_0", 0, ErrSyntax},
		{"0b101", 0, ErrSyntax},
		{"-5", 0, ErrSyntax},
		{"+5", 0, ErrSyntax},
		{"cls_nop+", 0, ErrSyntax},
		{"cls_nop+0x", 0, ErrSyntax},
		{"cls_nop+-1", 0, ErrSyntax},
		{"cls_nop+1+1", 0, ErrSyntax},
		{"cls nop", 0, ErrSyntax},
		{"cls_nop\n", 0, ErrSyntax},
		{"99999999999999999999999", 0, ErrSyntax},
		{"no_such_function", 0, ErrNoSymbol},
		{"fixdata", 0, ErrNoSymbol}, // an object, not a function
		{"counter", 0, ErrNoSymbol},
		{"0", 0, ErrNotExecutable}, // the ELF header: not an executable segment
		{strconv.FormatInt(st.Size(), 10), 0, ErrNotExecutable},
		{"0xffffffffffffffff", 0, ErrNotExecutable},
	} {
		got, err := f.Resolve(c.loc)
		if c.err == nil {
			if c.loc == "nosize" {
				c.want = got
			}
			if err != nil || got != c.want {
				t.Errorf("Resolve(%q) = %#x, %v, want %#x", c.loc, got, err, c.want)
			}
			continue
		}
		if !errors.Is(err, c.err) {
			t.Errorf("Resolve(%q) = %#x, %v, want %v", c.loc, got, err, c.err)
		}
	}
	// Analyze refuses offsets outside code, too.
	for _, off := range []uint64{0, uint64(st.Size()), 1 << 62} {
		if _, err := f.Analyze(off); !errors.Is(err, ErrNotExecutable) {
			t.Errorf("Analyze(%#x) = %v, want ErrNotExecutable", off, err)
		}
	}
	if s := f.Symbolize(nop + 1); s != "cls_nop+0x1" {
		t.Errorf("Symbolize(%#x) = %q, want cls_nop+0x1", nop+1, s)
	}
	if s := f.Symbolize(0); s != "0x0" {
		t.Errorf("Symbolize(0) = %q", s)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	prog := testfix.CC(t, "testdata/prog.c", "-O2")
	good, err := os.ReadFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	arm := append([]byte(nil), good...)
	binary.LittleEndian.PutUint16(arm[18:], 183) // e_machine = EM_AARCH64
	trunc := good[:100]
	obj := filepath.Join(dir, "obj.o")
	run(t, "gcc", "-c", "-o", obj, "testdata/lib.c")
	for _, c := range []struct {
		path string
		err  error
	}{
		{write("text", []byte("#!/bin/sh\necho hi\n")), ErrNotELF},
		{write("empty", nil), ErrNotELF},
		{write("trunc", trunc), ErrNotELF},
		{write("arm", arm), ErrNotX86_64},
		{obj, ErrNotELF},
		{dir, ErrNotELF},
		{filepath.Join(dir, "missing"), os.ErrNotExist},
	} {
		f, err := Open(c.path)
		if !errors.Is(err, c.err) {
			t.Errorf("Open(%s) = %v, want %v", filepath.Base(c.path), err, c.err)
		}
		if f != nil {
			f.Close()
		}
	}
}

func chmod(path string, mode os.FileMode) error { return os.Chmod(path, mode) }
