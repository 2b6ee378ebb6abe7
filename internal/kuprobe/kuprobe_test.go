package kuprobe

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

func TestKernelUprobe(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("kernel uprobes: %v", err)
	}
	bin := testfix.CC(t, "testdata/loop.c", "-O2")
	off := testfix.SymOff(t, bin, "f")
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
