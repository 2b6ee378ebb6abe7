// Package testfix builds the C fixtures that tests probe.
//
// Every fixture is compiled by the test into a private directory, so that a
// probe never lands in a binary that other processes on the machine map.
package testfix

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// CC compiles the C source file src with gcc into a new file in a private
// temporary directory of tb and returns its path. flags are passed to gcc
// before the source (for example "-O2", "-no-pie", "-shared", "-fPIC").
// The test fails if gcc fails.
func CC(tb testing.TB, src string, flags ...string) string {
	tb.Helper()
	abs, err := filepath.Abs(src)
	if err != nil {
		tb.Fatal(err)
	}
	out := filepath.Join(tb.TempDir(), filepath.Base(src[:len(src)-len(filepath.Ext(src))]))
	args := append(append([]string{"-g", "-o", out}, flags...), abs)
	cmd := exec.Command("gcc", args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("gcc %v: %v\n%s", args, err, b)
	}
	return out
}

// Copy copies the file src to a new file in a private temporary directory of
// tb (a new inode) and returns its path; the mode is kept.
func Copy(tb testing.TB, src string) string {
	tb.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := os.Stat(src)
	if err != nil {
		tb.Fatal(err)
	}
	dst := filepath.Join(tb.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, b, st.Mode().Perm()); err != nil {
		tb.Fatal(err)
	}
	return dst
}

// SymOff returns the file offset of the symbol sym (of any type, so that
// tests can also aim at data) in the ELF file path, computed from the
// PT_LOAD segment that holds it. The test fails if there is none.
func SymOff(tb testing.TB, path, sym string) uint64 {
	tb.Helper()
	f, err := elf.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		tb.Fatal(err)
	}
	for _, s := range syms {
		if s.Name != sym {
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && s.Value >= p.Vaddr && s.Value < p.Vaddr+p.Memsz {
				return s.Value - p.Vaddr + p.Off
			}
		}
	}
	tb.Fatalf("%s: no symbol %s in a loaded segment", path, sym)
	return 0
}
