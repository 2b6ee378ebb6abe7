package proc

import (
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// The "faults and signals in slots" tests (issue 11 items 5 and 6):
// testdata/fault.c probed on an instruction that faults, that must fault
// for real, or around which signals arrive. The program's output (what its
// handlers saw: si_code, si_addr, and rip, err, trapno, cr2 of the signal
// context) must equal the unprobed run's, and every call counts.

func faultBin(t *testing.T) string {
	return testfix.Copy(t, buildOnce(t, "fault", "-O2"))
}

// TestFaultInSlot: each probed instruction faults on every call: a slotted
// load, an emulated indirect call through a bad pointer, an emulated ret
// from an unmapped stack. Before, the handler saw rip inside our slot page
// (load), or si_code SI_USER with a bogus si_addr and no fault context
// (call, ret: the tracer sent SIGSEGV itself).
func TestFaultInSlot(t *testing.T) {
	bin := faultBin(t)
	for _, c := range []struct{ mode, loc, class string }{
		{"load", "f_load", "slot"},
		{"callind", "f_callind", "call-indirect"},
		{"retbad", "f_retbad+3", "ret"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			e := newEnv(t, Options{})
			const n = 200
			ps := harmRun(t, e, bin, []string{c.loc}, c.mode, "200")
			if ps[0].plan.Class != c.class {
				t.Fatalf("%s is %s, want a %s", c.loc, ps[0].plan, c.class)
			}
			if got := ps[0].c.Hits(); got != n {
				t.Errorf("%d hits, want %d", got, n)
			}
		})
	}
}

// TestEmulatedCallGrowsStack: an emulated call whose return address goes
// on a page of the main stack never touched before. Natively the kernel
// grows the stack on that write. Emulation writes with process_vm_writev,
// which honours protections and does not grow a stack: the write is then
// made by the process (fault code), and the call emulated after it.
func TestEmulatedCallGrowsStack(t *testing.T) {
	bin := faultBin(t)
	e := newEnv(t, Options{})
	ps := harmRun(t, e, bin, []string{"f_stackcall+6"}, "stackcall", "50")
	if ps[0].plan.Class != "call" {
		t.Fatalf("f_stackcall+6 is %s, want a call", ps[0].plan)
	}
	if got := ps[0].c.Hits(); got != 50 {
		t.Errorf("%d hits, want 50", got)
	}
}

// TestPopfSetsTF: a probed popf that sets TF: the program's SIGTRAP
// handler counts six traps per call, as natively (it counted seven: the
// slot's jump back trapped too).
func TestPopfSetsTF(t *testing.T) {
	bin := faultBin(t)
	e := newEnv(t, Options{})
	ps := harmRun(t, e, bin, []string{"f_popf+9"}, "popf", "1000")
	if !strings.HasPrefix(ps[0].plan.Asm, "popf") {
		t.Fatalf("f_popf+9 is %s, want the popf", ps[0].plan)
	}
	if got := ps[0].c.Hits(); got != 1000 {
		t.Errorf("%d hits, want 1000", got)
	}
}

// TestSignalsAroundSlot: SIGALRM every 50 us while a slotted instruction
// is hit in a loop: signals pending when the tracer resumes a thread into
// its slot were delivered there, and the handler saw rip in our page. The
// handler counts contexts outside the program's text (0 natively).
func TestSignalsAroundSlot(t *testing.T) {
	bin := faultBin(t)
	e := newEnv(t, Options{})
	ps := harmRun(t, e, bin, []string{"f_slot"}, "async", "2000")
	if ps[0].plan.Kind.String() != "slot" {
		t.Fatalf("f_slot is %s, want a slot", ps[0].plan)
	}
	if got := ps[0].c.Hits(); got != 2000 {
		t.Errorf("%d hits, want 2000", got)
	}
}
