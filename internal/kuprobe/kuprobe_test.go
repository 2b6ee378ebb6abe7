package kuprobe

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
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

func TestEventArgs(t *testing.T) {
	trace := []byte("# tracer: nop\n" +
		"  a-1 [000] ..... 1.0: ufs_p: (0x401136) x=1 s=\"a b\"\n" +
		"  a-1 [000] ..... 2.0: ufs_r: (0x401136 <- 0x401200) r=0\n" +
		"  a-1 [000] ..... 3.0: ufs_p: (0x401136) x=2 s=\"c\"\n")
	if got, want := EventArgs(trace, "ufs_p"), ` x=2 s="c"`; got != want {
		t.Errorf("EventArgs(ufs_p) = %q, want %q (the last event)", got, want)
	}
	if got, want := EventArgs(trace, "ufs_r"), " r=0"; got != want {
		t.Errorf("EventArgs(ufs_r) = %q, want %q", got, want)
	}
	if got := EventArgs(trace, "ufs"); got != "" {
		t.Errorf("EventArgs(ufs) = %q, want none (no such event)", got)
	}
}

func TestFieldDiffs(t *testing.T) {
	if d := FieldDiffs(" a=1  b=2", "a=1 b=2"); d != nil {
		t.Errorf("same fields, other spacing: %q", d)
	}
	want := []string{`field 1: kernel "b=2", uprobefs "b=3"`, `field 2: kernel "", uprobefs "c=4"`}
	if d := FieldDiffs("a=1 b=2", "a=1 b=3 c=4"); !slices.Equal(d, want) {
		t.Errorf("FieldDiffs = %q, want %q", d, want)
	}
}
