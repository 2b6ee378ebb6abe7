package objfile

import (
	"errors"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestJumpAt checks the file rules of jump sites on testdata/jump.c, built
// PIE and not, -O2: a function with a jump table, one with a loop back into
// its first 5 bytes, one that another function branches into, are refused
// with their reason; a plain function (and the one that branches out) is
// accepted; and Analyze carries the same decision.
func TestJumpAt(t *testing.T) {
	for _, flags := range [][]string{{"-O2", "-pie", "-fPIE"}, {"-O2", "-no-pie", "-fno-pie"}} {
		f := openT(t, testfix.CC(t, "testdata/jump.c", flags...))
		for _, c := range []struct {
			sym    string
			len    int    // accepted: displaced bytes
			reason string // refused: the reason starts so
		}{
			{"plain", 6, ""},
			{"intruder", 5, ""},
			{"loop_back", 0, "branch into the displaced range from this function (loop_back+0x8 to +2)"},
			{"victim", 0, "branch into the displaced range from another function (intruder+0x3 to +1)"},
			{"with_switch", 0, "indirect jmp in the function (with_switch+0x"},
			{"short_fn", 0, "function too short for a jump (ret after 3 bytes)"},
			{"sys_fn", 0, "syscall in the displaced range"},
		} {
			off, err := f.Resolve(c.sym)
			if err != nil {
				t.Fatal(err)
			}
			j, err := f.JumpAt(off)
			p, aerr := f.Analyze(off)
			if aerr != nil {
				t.Fatalf("%v %s: Analyze: %v", flags, c.sym, aerr)
			}
			if c.reason == "" {
				if err != nil || j.Len != c.len {
					t.Errorf("%v %s: JumpAt: %v %v, want %d bytes", flags, c.sym, j, err, c.len)
				} else if p.Jump == nil || p.Jump.Len != c.len || p.NoJump != "" {
					t.Errorf("%v %s: Analyze: Jump %v NoJump %q", flags, c.sym, p.Jump, p.NoJump)
				}
				continue
			}
			if !errors.Is(err, install.ErrRefused) || !strings.HasPrefix(install.RefusalReason(err), c.reason) {
				t.Errorf("%v %s: JumpAt: %v %v, want %q", flags, c.sym, j, err, c.reason)
			}
			if p.Jump != nil || p.NoJump != install.RefusalReason(err) {
				t.Errorf("%v %s: Analyze: Jump %v NoJump %q, want %q", flags, c.sym, p.Jump, p.NoJump, install.RefusalReason(err))
			}
		}
		// The scan saw the loop's branch and the jump table.
		if insns, branches, indirect, _ := f.ScanStats(); insns == 0 || branches == 0 || indirect == 0 {
			t.Errorf("%v: scan: %d instructions, %d branches, %d indirect jmps", flags, insns, branches, indirect)
		}
		// Outside the executable code.
		if _, err := f.JumpAt(1); !errors.Is(err, ErrNotExecutable) {
			t.Errorf("%v: JumpAt(1): %v", flags, err)
		}
	}
}

// TestJumpAtConcurrent: the lazy scan is built once and shared.
func TestJumpAtConcurrent(t *testing.T) {
	f := openT(t, testfix.CC(t, "testdata/jump.c", "-O2"))
	off, err := f.Resolve("victim")
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			_, err := f.JumpAt(off)
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err == nil || !strings.Contains(err.Error(), "from another function") {
			t.Errorf("JumpAt(victim): %v", err)
		}
	}
}
