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

// reasonClass is a reason without its details: "indirect jmp in the
// function (main+0x1c, ...)" -> "indirect jmp in the function".
func reasonClass(err error) string {
	r := install.RefusalReason(err)
	if i := strings.Index(r, " ("); i >= 0 {
		r = r[:i]
	}
	return r
}

// TestJumpAtStripped: without symbols the bounds come from the unwind
// entries (and the next symbol or the segment end), and give the same
// decisions at every function entry as the symbols do.
func TestJumpAtStripped(t *testing.T) {
	for _, fx := range buildFixtures(t) {
		if !fx.stripped {
			continue
		}
		full, bare := openT(t, fx.base.path), openT(t, fx.path)
		same, uncovered := 0, 0
		for _, off := range full.FunctionStarts() {
			if _, err := full.Analyze(off); err != nil {
				continue
			}
			j1, err1 := full.JumpAt(off)
			j2, err2 := bare.JumpAt(off)
			if err2 != nil && strings.HasPrefix(install.RefusalReason(err2), "no function symbol or unwind entry covers it") {
				uncovered++
				continue
			}
			if (err1 == nil) != (err2 == nil) || err1 != nil && reasonClass(err1) != reasonClass(err2) ||
				err1 == nil && (j1.Len != j2.Len || !slicesEqual(j1.Asm, j2.Asm)) {
				t.Errorf("%s %s: with symbols %v %v; stripped %v %v", fx.name, full.Symbolize(off), j1, err1, j2, err2)
				continue
			}
			same++
		}
		if same < 4 {
			t.Errorf("%s: only %d function entries compared (%d uncovered)", fx.name, same, uncovered)
		}
		t.Logf("%s: %d function entries decided alike, %d not covered by an unwind entry", fx.name, same, uncovered)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

// TestJumpAtGo: in a Go binary function entries get jump sites (the
// stack-check prologue is displaced), an offset inside a function never.
func TestJumpAtGo(t *testing.T) {
	f := openT(t, testfix.GoTarget(t))
	for _, sym := range []string{testfix.GoTick, "main.main"} {
		off, err := f.Resolve(`"` + sym + `"`)
		if err != nil {
			t.Fatal(err)
		}
		j, err := f.JumpAt(off)
		if err != nil {
			t.Errorf("%s: %v", sym, err)
			continue
		}
		t.Logf("%s: %v", sym, j)
		p, err := f.Analyze(off + uint64(j.Len))
		if err != nil {
			t.Fatal(err)
		}
		if p.Jump != nil || !strings.HasPrefix(p.NoJump, "inside a Go function") {
			t.Errorf("%s+%d: Jump %v NoJump %q", sym, j.Len, p.Jump, p.NoJump)
		}
	}
}

// TestJumpAtExceptions: in a C++ file with exception tables, function
// entries get jump sites, offsets inside a function (where a landing pad
// may be) never.
func TestJumpAtExceptions(t *testing.T) {
	f := openT(t, testfix.CXX(t, "testdata/throw.cc", "-O2"))
	if !f.HasExceptions() {
		t.Fatal("no exception tables")
	}
	accepted := 0
	for _, sym := range []string{"main", "_Z7throweri"} {
		off, err := f.Resolve(sym)
		if err != nil {
			t.Fatal(err)
		}
		if j, err := f.JumpAt(off); err == nil {
			accepted++
			t.Logf("%s: %v", sym, j)
		} else {
			t.Logf("%s: %v", sym, err)
		}
		l, err := install.InsnLen(readAtT(t, f, off))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.JumpAt(off + uint64(l)); err == nil || !strings.Contains(err.Error(), "C++ exception tables") {
			t.Errorf("%s+%d: %v", sym, l, err)
		}
	}
	if accepted == 0 {
		t.Error("no function entry accepted")
	}
}

func readAtT(t *testing.T, f *File, off uint64) []byte {
	t.Helper()
	b := make([]byte, install.MaxInsnLen)
	n, err := f.readAt(b, off)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}
