package install

import (
	"encoding/binary"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestJumpRealCode runs the displaced instructions of real function
// entries (the Go fixture's functions, runtime included, bash, perl; read
// only)
// natively in the harness and through their trampoline entered by the
// jump site, and compares the outcome: the same signal (an int3 after the
// range or at a branch target, or a fault: real code's rip-relative and
// pointer operands mostly fault here) with the same registers and memory,
// the trampoline's registers mapped back with PCAt where it stopped inside
// the trampoline, and the counter incremented once.
func TestJumpRealCode(t *testing.T) {
	h := startHarness(t)
	runs, accepted, faults := 0, 0, 0
	for _, path := range []string{testfix.GoTarget(t), "/usr/bin/bash", "/usr/bin/perl"} {
		for _, code := range realEntries(path, 300) {
			j, err := AnalyzeJump(code)
			if err != nil {
				continue
			}
			accepted++
			const at, counter = hSlot + 0x40, hData + 0xf00
			tc, _, err := j.Trampoline(insnAt, at, counter)
			if err != nil {
				continue // a rip-relative operand out of reach from the slot page
			}
			name := fmt.Sprintf("%s: % x (%s)", path, j.Orig, strings.Join(j.Asm, "; "))
			mc := mcase{}
			in := startState(&mc, 0, hStack+0x800)
			copy(in.Code[insnAt-hCode:], j.Orig)
			in.Regs.Rip = insnAt
			native := h.run(t, in)
			sin := startState(&mc, 0, hStack+0x800)
			copy(sin.Code[insnAt-hCode:], j.Orig)
			jmp, err := JumpInsn(insnAt, at)
			if err != nil {
				t.Fatal(err)
			}
			copy(sin.Code[insnAt-hCode:], jmp)
			place(sin, at, tc)
			put64(sin.Data[counter-hData:], counterStart)
			sin.Regs.Rip = insnAt
			got := h.run(t, sin)
			runs += 2
			if native.Sig != uint64(syscall.SIGTRAP) {
				faults++
			}
			pc := TrampPC{}
			if got.Regs.Rip >= at && got.Regs.Rip < at+uint64(len(tc)) {
				var ok bool
				if pc, ok = j.PCAt(insnAt, at, int(got.Regs.Rip-at)); !ok || pc.Prologue {
					t.Errorf("%s: stopped at trampoline offset %d: %+v %v", name, got.Regs.Rip-at, pc, ok)
					continue
				}
				got.Regs.Rip = insnAt + uint64(pc.Off)
				got.Regs.R[4] += uint64(pc.RSPAdd)
			}
			if n := binary.LittleEndian.Uint64(got.Data[counter-hData:]); n != counterStart+1 {
				t.Errorf("%s: counter %#x", name, n)
			}
			copy(got.Data[counter-hData:counter-hData+8], native.Data[counter-hData:])
			w := hStack + 0x800 - 136 - hStack
			copy(got.Stack[w:w+8], native.Stack[w:w+8])
			if pc.RSPAdd == 8 {
				if v := native.Regs.R[4] - 8 - hStack; v < page-8 {
					copy(got.Stack[v:v+8], native.Stack[v:v+8])
				}
			}
			compare(t, name, native, got)
		}
	}
	if accepted < 200 {
		t.Errorf("only %d real entries accepted", accepted)
	}
	t.Logf("%d real entries accepted, %d harness runs, %d native runs ended in a fault", accepted, runs, faults)
}
