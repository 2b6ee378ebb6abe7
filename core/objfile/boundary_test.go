package objfile

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

var (
	objdumpFunc = regexp.MustCompile(`^([0-9a-f]+) <([^>]+)>:$`)
	objdumpInsn = regexp.MustCompile(`^\s+([0-9a-f]+):\s+(.*)$`)
)

// testBoundary checks, for every byte of every sized function of the
// fixture, that Analyze refuses it with ErrNotBoundary exactly when objdump
// does not start an instruction there.
func testBoundary(t *testing.T, fx *fixture) {
	f := openT(t, fx.path)
	type fn struct {
		name  string
		addr  uint64
		insns map[uint64]bool
		bad   bool
	}
	var fns []*fn
	var cur *fn
	sc := bufio.NewScanner(strings.NewReader(run(t, "objdump", "-d", "--no-show-raw-insn", fx.path)))
	for sc.Scan() {
		line := sc.Text()
		if m := objdumpFunc.FindStringSubmatch(line); m != nil {
			cur = &fn{name: m[2], addr: hexT(t, m[1]), insns: make(map[uint64]bool)}
			fns = append(fns, cur)
			continue
		}
		if m := objdumpInsn.FindStringSubmatch(line); m != nil && cur != nil {
			cur.insns[hexT(t, m[1])] = true
			if strings.Contains(m[2], "(bad)") {
				cur.bad = true
			}
		}
	}
	checked := 0
	for _, fn := range fns {
		if fn.bad || strings.Contains(fn.name, "@") {
			continue
		}
		off, err := f.Resolve(fn.name)
		if err != nil {
			continue // not an STT_FUNC, or ambiguous
		}
		s, err := f.lookup(fn.name)
		if err != nil || s.size == 0 {
			continue
		}
		for k := uint64(0); k < s.size; k++ {
			_, err := f.Analyze(off + k)
			start := fn.insns[fn.addr+k]
			if start && errors.Is(err, ErrNotBoundary) {
				t.Errorf("%s+%#x: objdump starts an instruction there, Analyze: %v", fn.name, k, err)
			}
			if !start && !errors.Is(err, ErrNotBoundary) {
				t.Errorf("%s+%#x: inside an instruction for objdump, Analyze: %v", fn.name, k, err)
			}
			checked++
		}
	}
	if checked < 50 {
		t.Fatalf("only %d offsets checked", checked)
	}
	t.Logf("%s: %d offsets agree with objdump", fx.name, checked)
}

// copyRO copies path into a private temp dir, read-only.
func copyRO(t testing.TB, path string) string {
	t.Helper()
	cp := testfix.Copy(t, path)
	if err := chmod(cp, 0o444); err != nil {
		t.Fatal(err)
	}
	return cp
}

// testStarts checks every byte of every executable section of the fixture
// against objdump of its unstripped build: Analyze refuses a byte with
// ErrNotBoundary exactly when objdump does not start an instruction there
// or no known start (function symbol, PLT entry, unwind entry) covers it:
// in the PLT, padding between functions, and, in a stripped build, all
// the code the unwind entries describe.
func testStarts(t *testing.T, fx *fixture) {
	f := openT(t, fx.path)
	base := fx
	if fx.base != nil {
		base = fx.base
	}
	ef, err := elf.Open(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	// objdump's instruction starts, by vaddr; functions holding (bad) are
	// left out (objdump lost the thread there).
	insns := make(map[uint64]bool)
	var fnInsns []uint64
	bad := false
	flush := func() {
		if !bad {
			for _, a := range fnInsns {
				insns[a] = true
			}
		}
		fnInsns, bad = fnInsns[:0], false
	}
	skip := make(map[uint64]bool)
	var fnStart uint64
	sc := bufio.NewScanner(strings.NewReader(run(t, "objdump", "-d", "--no-show-raw-insn", base.path)))
	for sc.Scan() {
		line := sc.Text()
		if m := objdumpFunc.FindStringSubmatch(line); m != nil {
			if bad {
				skip[fnStart] = true
			}
			flush()
			fnStart = hexT(t, m[1])
			continue
		}
		if m := objdumpInsn.FindStringSubmatch(line); m != nil {
			fnInsns = append(fnInsns, hexT(t, m[1]))
			if strings.Contains(m[2], "(bad)") {
				bad = true
			}
		}
	}
	flush()
	counts := map[string]int{}
	for _, s := range ef.Sections {
		if s.Type != elf.SHT_PROGBITS || s.Flags&elf.SHF_EXECINSTR == 0 {
			continue
		}
		for a := s.Addr; a < s.Addr+s.Size; a++ {
			off := a - s.Addr + s.Offset
			st, known := f.startBefore(off)
			if known && skip[st.off-s.Offset+s.Addr] {
				continue
			}
			_, err := f.Analyze(off)
			refused := errors.Is(err, ErrNotBoundary)
			switch {
			case !known && !refused:
				t.Errorf("%s %#x: no known start covers it, Analyze: %v", s.Name, a, err)
			case known && insns[a] && refused:
				t.Errorf("%s %#x: objdump starts an instruction there (decoded from %s), Analyze: %v", s.Name, a, st.at(st.off), err)
			case known && !insns[a] && !refused:
				t.Errorf("%s %#x: inside an instruction for objdump, Analyze: %v", s.Name, a, err)
			}
			if !known {
				counts[s.Name+" uncovered"]++
			} else if insns[a] {
				counts[s.Name+" starts"]++
			} else {
				counts[s.Name+" inside"]++
			}
		}
	}
	for _, name := range []string{".plt", ".text"} {
		if counts[name+" starts"] == 0 || counts[name+" inside"] == 0 {
			t.Errorf("%s: %d starts, %d inside instructions checked: want both", name, counts[name+" starts"], counts[name+" inside"])
		}
	}
	if counts[".text uncovered"] == 0 {
		t.Errorf(".text: no byte outside every known start (padding) was checked")
	}
	t.Logf("%s: %v", fx.name, counts)
}

var readelfFDE = regexp.MustCompile(`FDE cie=[0-9a-f]+ pc=([0-9a-f]+)\.\.([0-9a-f]+)`)

// testFDEs checks parseEhFrame against readelf's list of unwind entries.
func testFDEs(t *testing.T, fx *fixture) {
	ef, err := elf.Open(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	defer ef.Close()
	data, addr := ehFrame(ef)
	var got []string
	for _, fde := range parseEhFrame(data, addr) {
		got = append(got, fmt.Sprintf("%x..%x", fde[0], fde[0]+fde[1]))
	}
	var want []string
	for _, m := range readelfFDE.FindAllStringSubmatch(run(t, "readelf", "--debug-dump=frames", fx.path), -1) {
		want = append(want, fmt.Sprintf("%x..%x", hexT(t, m[1]), hexT(t, m[2])))
	}
	if len(want) < 3 || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("FDEs:\n got %v\nwant %v (readelf)", got, want)
	}
}
