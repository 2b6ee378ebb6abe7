package kuprobe

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// fileOffset returns the file offset of the function sym in bin.
func fileOffset(t *testing.T, bin, sym string) uint64 {
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range syms {
		if s.Name != sym {
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && s.Value >= p.Vaddr && s.Value < p.Vaddr+p.Filesz {
				return s.Value - p.Vaddr + p.Off
			}
		}
	}
	t.Fatalf("%s: no symbol %s", bin, sym)
	return 0
}

func TestKernelUprobe(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("kernel uprobes: %v", err)
	}
	bin := testfix.CC(t, "testdata/loop.c", "-O2")
	off := fileOffset(t, bin, "f")
	p, err := Add(fmt.Sprintf("kuprobe_test_%d", os.Getpid()), bin, off)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Remove(); err != nil {
			t.Error(err)
		}
	})
	if err := p.Enable(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "12345").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	n, err := p.Hits()
	if err != nil {
		t.Fatal(err)
	}
	if n != 12345 {
		t.Errorf("%d hits, want 12345", n)
	}
}
