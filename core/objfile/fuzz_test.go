package objfile

import (
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

var sentinels = []error{ErrNotELF, ErrNotX86_64, ErrSyntax, ErrNoSymbol, ErrNotExecutable, ErrPastSymbol, ErrNotBoundary, install.ErrRefused}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzResolve fuzzes the location parser (seed corpus in
// testdata/fuzz/FuzzResolve): no panic, only sentinel errors, and a resolved
// offset is executable, symbolizes back to itself and analyses without panic.
func FuzzResolve(f *testing.F) {
	file := openT(f, testfix.CC(f, "testdata/prog.c", "-O2"))
	for _, s := range []string{"cls_nop", "cls_nop+0x1", "bnd_movabs+3", "0x1000", "4096", "main", "nosize+1", "", "+", "0x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, loc string) {
		off, err := file.Resolve(loc)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("Resolve(%q): %v is not a sentinel error", loc, err)
			}
			return
		}
		if err := file.checkExec(off); err != nil {
			t.Fatalf("Resolve(%q) = %#x: %v", loc, off, err)
		}
		sym := file.Symbolize(off)
		if back, err := file.Resolve(sym); err != nil || back != off {
			t.Fatalf("Resolve(%q) = %#x; Symbolize = %q -> %#x, %v", loc, off, sym, back, err)
		}
		if _, err := file.Analyze(off); err != nil && !isSentinel(err) {
			t.Fatalf("Analyze(%#x): %v", off, err)
		}
	})
}

// FuzzOpen fuzzes the ELF reader: no panic, only ErrNotELF/ErrNotX86_64, and
// an opened file analyses its symbols without panic.
func FuzzOpen(f *testing.F) {
	if b, err := os.ReadFile(testfix.CC(f, "testdata/lib.c", "-O2", "-shared", "-fPIC")); err == nil {
		f.Add(b)
	}
	f.Add([]byte("\x7fELF\x02\x01\x01"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "elf")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		file, err := Open(path)
		if err != nil {
			if !errors.Is(err, ErrNotELF) && !errors.Is(err, ErrNotX86_64) {
				t.Fatalf("Open: %v", err)
			}
			return
		}
		defer file.Close()
		for i, s := range file.syms {
			if i == 64 {
				break
			}
			file.Symbolize(s.off)
			if _, err := file.Resolve(s.name); err != nil && !isSentinel(err) {
				t.Fatalf("Resolve(%q): %v", s.name, err)
			}
			if _, err := file.Analyze(s.off); err != nil && !isSentinel(err) {
				t.Fatalf("Analyze(%#x): %v", s.off, err)
			}
			rets, err := file.ReturnsAt(s.off)
			if err != nil && !isSentinel(err) {
				t.Fatalf("ReturnsAt(%#x): %v", s.off, err)
			}
			for j, r := range rets {
				if r < s.off || r-s.off >= s.size || (j > 0 && r <= rets[j-1]) {
					t.Fatalf("ReturnsAt(%#x) (size %#x) = %#x", s.off, s.size, rets)
				}
			}
		}
		file.IsGo()
	})
}

// FuzzEhFrame fuzzes the .eh_frame reader with the section of a real build
// as seed: no panic, and every entry it returns lies inside the section's
// address range arithmetic without overflow (a start and a length).
func FuzzEhFrame(f *testing.F) {
	ef, err := elf.Open(testfix.CC(f, "testdata/prog.c", "-O2"))
	if err != nil {
		f.Fatal(err)
	}
	data, addr := ehFrame(ef)
	ef.Close()
	f.Add(data, addr)
	f.Add(data[:len(data)/2], addr)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}, uint64(0))
	f.Fuzz(func(t *testing.T, b []byte, addr uint64) {
		for _, fde := range parseEhFrame(b, addr) {
			if fde[0]+fde[1] < fde[0] {
				t.Fatalf("entry %#x+%#x wraps", fde[0], fde[1])
			}
		}
	})
}
