package objfile

import (
	"bufio"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

func TestReturns(t *testing.T) {
	path := testfix.CC(t, "testdata/rets.c", "-O0")
	f := openT(t, path)
	if f.IsGo() {
		t.Error("IsGo of a C program")
	}
	start, err := f.Resolve("rets")
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.Returns("rets")
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{start + 13, start + 19, start + 22}
	if !slices.Equal(got, want) {
		t.Errorf("Returns(rets) = %#x, want %#x", got, want)
	}
	if at, err := f.ReturnsAt(start); err != nil || !slices.Equal(at, want) {
		t.Errorf("ReturnsAt(%#x) = %#x, %v", start, at, err)
	}
	if got, err := f.Returns("tail"); err != nil || len(got) != 0 {
		t.Errorf("Returns(tail) = %#x, %v; want none", got, err)
	}
	for _, c := range []struct {
		name string
		err  error
	}{{"nosize", ErrPastSymbol}, {"no_such_function", ErrNoSymbol}} {
		if got, err := f.Returns(c.name); !errors.Is(err, c.err) {
			t.Errorf("Returns(%s) = %#x, %v; want %v", c.name, got, err, c.err)
		}
	}
	if got, err := f.ReturnsAt(start + 4); !errors.Is(err, ErrNoSymbol) {
		t.Errorf("ReturnsAt(rets+4) = %#x, %v; want ErrNoSymbol", got, err)
	}
	checkReturnsObjdump(t, path, f, nil)
}

// TestReturnsFixtures compares Returns with objdump for every sized function
// of every C fixture build (PIE, non-PIE, -O0, -O2, a shared library).
func TestReturnsFixtures(t *testing.T) {
	for _, fx := range buildFixtures(t) {
		if fx.stripped {
			continue // no .symtab: the same functions as their base, fewer
		}
		t.Run(fx.name, func(t *testing.T) {
			f := openT(t, fx.path)
			if f.IsGo() {
				t.Error("IsGo of a C build")
			}
			min := 10
			if !fx.prog {
				min = 3
			}
			if n := checkReturnsObjdump(t, fx.path, f, nil); n < min {
				t.Errorf("only %d functions checked", n)
			}
		})
	}
}

// TestReturnsGo: a Go binary is Go, stripped too; Returns of its functions
// agree with objdump (every function of the packages named, runtime
// included, which has the largest and oddest ones).
func TestReturnsGo(t *testing.T) {
	path := testfix.GoTarget(t)
	f := openT(t, path)
	if !f.IsGo() {
		t.Error("IsGo of a Go program is false")
	}
	stripped := filepath.Join(t.TempDir(), "gotarget.stripped")
	run(t, "strip", "-o", stripped, path)
	if sf := openT(t, stripped); !sf.IsGo() {
		t.Error("IsGo of a stripped Go program is false")
	}
	for _, sym := range []string{testfix.GoTick, testfix.GoTock} {
		rets, err := f.Returns(sym)
		if err != nil || len(rets) == 0 {
			t.Errorf("Returns(%s) = %#x, %v", sym, rets, err)
		}
	}
	n := checkReturnsObjdump(t, path, f, func(name string) bool {
		return strings.HasPrefix(name, "runtime.") || strings.HasPrefix(name, "example.com/") || strings.HasPrefix(name, "main.")
	})
	if n < 500 {
		t.Errorf("only %d Go functions checked", n)
	}
}

// checkReturnsObjdump compares Returns of every sized function symbol of
// path (that keep accepts, nil: all) with the ret instructions objdump
// disassembles inside it, and where objdump finds an undecodable byte
// ("(bad)") checks that Returns refuses the function with ErrNotBoundary;
// it returns how many functions it compared.
func checkReturnsObjdump(t *testing.T, path string, f *File, keep func(string) bool) int {
	t.Helper()
	segs := readelfSegments(t, path)
	// Every ret objdump finds, by file offset.
	isRetAt, isBadAt := map[uint64]bool{}, map[uint64]bool{}
	sc := bufio.NewScanner(strings.NewReader(run(t, "objdump", "-d", "-w", "--no-show-raw-insn", path)))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		addr, insn, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":\t")
		if !ok {
			continue
		}
		var v uint64
		if _, err := fmt.Sscanf(addr, "%x", &v); err != nil {
			continue
		}
		fields := strings.Fields(insn)
		if strings.Contains(insn, "(bad)") {
			if off, ok := fileOffset(segs, v); ok {
				isBadAt[off] = true
			}
		}
		for i := 0; i < len(fields) && i < 3; i++ {
			if m := fields[i]; m == "ret" || m == "retq" || m == "retw" {
				if off, ok := fileOffset(segs, v); ok {
					isRetAt[off] = true
				}
				break
			}
		}
	}
	checked := 0
	seen := map[string]bool{}
	for _, s := range readelfFuncs(t, path) {
		if s.size == 0 || seen[s.name] || (keep != nil && !keep(s.name)) {
			continue
		}
		seen[s.name] = true
		off, ok := fileOffset(segs, s.value)
		if !ok {
			continue
		}
		got, err := f.ReturnsAt(off)
		bad := false
		for o := off; o < off+s.size; o++ {
			bad = bad || isBadAt[o]
		}
		if bad {
			if !errors.Is(err, ErrNotBoundary) {
				t.Errorf("%s: objdump finds an undecodable byte; ReturnsAt(%#x) = %#x, %v", s.name, off, got, err)
			}
			checked++
			continue
		}
		if err != nil {
			t.Errorf("%s: ReturnsAt(%#x): %v", s.name, off, err)
			continue
		}
		var want []uint64
		for o := off; o < off+s.size; o++ {
			if isRetAt[o] {
				want = append(want, o)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: Returns = %#x, objdump %#x", s.name, got, want)
		}
		checked++
	}
	return checked
}
