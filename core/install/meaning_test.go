package install

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// The fixed layout of testdata/harness.c.
const (
	hCode  = 0x10000000 // the probed instruction's page
	hData  = 0x10100000
	hStack = 0x10200000
	hSlot  = 0x58000000     // a slot page 1.1 GiB above the code
	hFar   = 0x300000000000 // out of rel32 reach of the others
	page   = 4096
	insnAt = hCode + 0x100 // where the probed instruction lives
)

var regNames = [16]string{"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"}

type hRegs struct {
	R           [16]uint64 // encoding order, as regNames
	Rflags, Rip uint64
}

type hIn struct {
	Regs                         hRegs
	Code, Slot, Data, Stack, Far [page]byte
}

type hOut struct {
	Sig              uint64
	Regs             hRegs
	Data, Stack, Far [page]byte
}

// harness is a running testdata/harness.c.
type harness struct {
	in  io.Writer
	out *bufio.Reader
}

func startHarness(t *testing.T) *harness {
	t.Helper()
	bin := testfix.CC(t, "testdata/harness.c", "-O2")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, bin)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // EOF ends the harness
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		cancel()
	})
	return &harness{in: stdin, out: bufio.NewReader(stdout)}
}

func (h *harness) run(t *testing.T, in *hIn) *hOut {
	t.Helper()
	if err := binary.Write(h.in, binary.LittleEndian, in); err != nil {
		t.Fatalf("harness: write: %v", err)
	}
	out := new(hOut)
	if err := binary.Read(h.out, binary.LittleEndian, out); err != nil {
		t.Fatalf("harness: read: %v", err)
	}
	return out
}

func toPtrace(r *hRegs) Regs {
	var p Regs
	for i := range r.R {
		*slot64(&p, uint8(i)) = r.R[i]
	}
	p.Eflags, p.Rip = r.Rflags, r.Rip
	return p
}

// pageMem is a Memory over the harness's pages, for Emulate.
type pageMem map[uint64]*[page]byte

func (m pageMem) access(vaddr uint64, p []byte, write bool) error {
	for i := range p {
		a := vaddr + uint64(i)
		pg := m[a&^(page-1)]
		if pg == nil {
			return fmt.Errorf("%#x: %w", a, syscall.EFAULT)
		}
		if write {
			pg[a&(page-1)] = p[i]
		} else {
			p[i] = pg[a&(page-1)]
		}
	}
	return nil
}
func (m pageMem) ReadMemory(vaddr uint64, p []byte) error  { return m.access(vaddr, p, false) }
func (m pageMem) WriteMemory(vaddr uint64, p []byte) error { return m.access(vaddr, p, true) }

// mcase is one instruction run natively and through its plan.
type mcase struct {
	hex   string                  // the instruction at insnAt
	class string                  // the expected class
	setup func(r *hRegs, in *hIn) // optional: adjust the start state
	flags []uint64                // start flag sets; default {0, all}
	rsps  []uint64                // start rsp values (add/sub rsp); default the stack
	cpu   string                  // a /proc/cpuinfo flag the instruction needs
}

// riprel encodes an instruction at insnAt whose RIP-relative operand
// reaches target: pre, disp32, post (hex).
func riprel(pre string, target uint64, post string) string {
	n := (len(pre) + len(post)) / 2
	var d [4]byte
	binary.LittleEndian.PutUint32(d[:], uint32(int32(int64(target)-int64(insnAt+n+4))))
	return pre + hex.EncodeToString(d[:]) + post
}

func le32(v int32) string {
	var d [4]byte
	binary.LittleEndian.PutUint32(d[:], uint32(v))
	return hex.EncodeToString(d[:])
}

func le64(v uint64) string {
	var d [8]byte
	binary.LittleEndian.PutUint64(d[:], v)
	return hex.EncodeToString(d[:])
}

func put64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }

var allFlags = []uint64{0, flagCF, flagZF, flagSF, flagOF, flagPF, flagSF | flagOF, flagCF | flagZF, flagZF | flagSF | flagOF, arithFlags}

func meaningCases() []mcase {
	setReg := func(kv ...any) func(r *hRegs, in *hIn) {
		return func(r *hRegs, in *hIn) {
			for i := 0; i < len(kv); i += 2 {
				r.R[kv[i].(int)] = kv[i+1].(uint64)
			}
		}
	}
	const rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r11 = 0, 1, 2, 3, 4, 5, 6, 7, 11
	var cs []mcase
	add := func(class string, hexes ...string) {
		for _, h := range hexes {
			cs = append(cs, mcase{hex: h, class: class})
		}
	}
	add("nop", "90", "0f1f00", "0f1f440000", "660f1f440000", "0f1f8000000000", "f30f1efb")
	add("endbr64", "f30f1efa")
	add("push", "53", "4154", "54", "55", "4157", "50", "4850")
	add("mov", "4889e5", "89f0", "4989f8", "6689d8", "88f8", "88cc", "4088fe", "4d89c1", "8ae1", "488bc3", "89e4", "4189c0")
	add("lea", "488d44b708", "8d44b708", "668d44b708", "4c8d4c2410", "488d04f500000000", "488d0424", "4a8d0c2b",
		riprel("488d05", hData+0x80, ""), riprel("4c8d3d", hData+0x7ffff000, ""))
	rsps := []uint64{hStack + 0x800, 0, ^uint64(0), 1 << 63, 1<<63 - 1, 0x18, 0xf, 0x107, 0x80}
	for _, h := range []string{"4883ec18", "4883c418", "4881ecf8feffff", "4881c4ffffff7f", "4883c480", "4883ec80", "4881ec00000080"} {
		cs = append(cs, mcase{hex: h, class: "addsub-rsp", rsps: rsps, flags: []uint64{0, arithFlags}})
	}
	add("jmp", "eb10", "ebde", "e900010000", "e900ffffff", "e900000000")
	add("call", "e800020000", "e800ffffff", "e800000000")
	ptrs := func(r *hRegs, in *hIn) {
		put64(in.Data[0x40:], hCode+0x300)
		put64(in.Data[0x48:], hCode+0x310)
		put64(in.Data[0x50:], hCode+0x320)
		put64(in.Stack[0x800:], hCode+0x330)
		put64(in.Stack[0x808:], hCode+0x340)
		r.R[rax], r.R[r11], r.R[rdi], r.R[rsi] = hCode+0x400, hCode+0x408, hData+0x40, 1
	}
	for _, c := range []struct{ class, hex string }{
		{"call-indirect", "ffd0"}, {"call-indirect", "41ffd3"}, {"call-indirect", "ff17"},
		{"call-indirect", "ff54f708"}, {"call-indirect", riprel("ff15", hData+0x48, "")}, {"call-indirect", "ff1424"},
		{"jmp-indirect", "ffe0"}, {"jmp-indirect", "41ffe3"}, {"jmp-indirect", "ff27"}, {"jmp-indirect", "ff64f708"},
		{"jmp-indirect", riprel("ff25", hData+0x48, "")}, {"jmp-indirect", riprel("f2ff25", hData+0x50, "")},
		{"jmp-indirect", "ff642408"},
		{"ret", "c3"}, {"ret", "f3c3"}, {"ret", "c21000"}, {"ret", "c20000"},
	} {
		cs = append(cs, mcase{hex: c.hex, class: c.class, setup: ptrs})
	}
	for cc := 0; cc < 16; cc++ {
		cs = append(cs, mcase{hex: fmt.Sprintf("%02x10", 0x70+cc), class: "jcc", flags: allFlags})
		cs = append(cs, mcase{hex: fmt.Sprintf("0f%02x", 0x80+cc) + le32(-0x80), class: "jcc", flags: allFlags})
	}
	for _, h := range []string{"e210", "e110", "e010", "e310", "67e310", "e2f0"} {
		for _, c := range []uint64{0, 1, 2, 1 << 32, 0xffffffff00000001} {
			cs = append(cs, mcase{hex: h, class: "loop", setup: setReg(rcx, c), flags: []uint64{0, flagZF}})
		}
	}
	// Out of line.
	add("slot", "b878563412", "31c0", "4801d8", "480fafc3", "48f7e3", "4899", "9c", "678d0437", "48c7c0ffffffff",
		"0fc8", "480fa3d8", "f7d8", "4d0fb7c0")
	cs = append(cs,
		mcase{hex: "c9", class: "slot", setup: func(r *hRegs, in *hIn) { r.R[rbp] = hStack + 0x900 }},
		mcase{hex: "f3a4", class: "slot", setup: setReg(rsi, uint64(hData+0x10), rdi, uint64(hData+0x200), rcx, uint64(16))},
		mcase{hex: "488b442408", class: "slot"},
		mcase{hex: "48a1" + le64(hData+0x80), class: "slot"},
		mcase{hex: "64488b042528000000", class: "slot"},
		mcase{hex: "66680100", class: "slot"},
	)
	for _, r := range []struct {
		pre  string
		off  uint64 // the operand: hData+off
		post string
	}{
		{"488b05", 0x80, ""},
		{"488905", 0x88, ""},
		{"833d", 0x80, "05"},
		{"8105", 0x90, "45230100"},
		{"c605", 0x98, "7f"},
		{"0fb60d", 0x81, ""},
		{"ff35", 0x80, ""},
		{"48ff05", 0x88, ""},
		{"488705", 0x88, ""},
		{"66c705", 0xa0, "3412"},
		{"48c705", 0xa8, "78563412"},
		{"4c3b1d", 0xff8, ""},
		{"480faf05", 0x80, ""},
		{"6b05", 0x84, "7f"}, // imul eax, [rip+x], 0x7f
	} {
		add("slot-riprel", riprel(r.pre, hData+r.off, r.post))
	}
	cs = append(cs, mcase{hex: riprel("c4e2f8f21d", hData+0x80, ""), class: "slot-riprel", cpu: "bmi1"})
	return cs
}

// startState is the deterministic start state of a case.
func startState(c *mcase, fl, rsp uint64) *hIn {
	in := new(hIn)
	for i := range in.Code {
		in.Code[i], in.Slot[i] = 0xcc, 0xcc
		in.Data[i] = byte(i*7 + 3)
		in.Stack[i] = byte(i*13 + 5)
	}
	for i := range in.Regs.R {
		in.Regs.R[i] = 0x0123456789abcdef*uint64(i+1) ^ uint64(i)<<56
	}
	in.Regs.R[4] = rsp
	in.Regs.R[5] = hStack + 0x900
	in.Regs.Rflags = 0x202 | fl
	if c.setup != nil {
		c.setup(&in.Regs, in)
	}
	return in
}

// TestMeaning runs every case natively in the harness and through its plan —
// Emulate in the tracer's model, or SlotCode executed in the harness from a
// near and a far slot — and compares registers, flags and memory.
func TestMeaning(t *testing.T) {
	h := startHarness(t)
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	runs := 0
	for _, c := range meaningCases() {
		code, err := decodeHex(c.hex)
		if err != nil {
			t.Fatalf("%s: %v", c.hex, err)
		}
		if c.cpu != "" && !strings.Contains(string(cpuinfo), " "+c.cpu+" ") {
			t.Logf("%s: cpu has no %s, skipped", c.hex, c.cpu)
			continue
		}
		p, err := AnalyzeBytes(code)
		if err != nil {
			t.Errorf("%s: AnalyzeBytes: %v", c.hex, err)
			continue
		}
		if p.Class != c.class || p.Len != len(code) {
			t.Errorf("%s (%s): class %s len %d, want %s len %d", c.hex, p.Asm, p.Class, p.Len, c.class, len(code))
			continue
		}
		flags, rsps := c.flags, c.rsps
		if flags == nil {
			flags = []uint64{0, arithFlags}
		}
		if rsps == nil {
			rsps = []uint64{hStack + 0x800}
		}
		for _, fl := range flags {
			for _, rsp := range rsps {
				name := fmt.Sprintf("%s (%s) flags %#x rsp %#x", c.hex, p.Asm, fl, rsp)
				in := startState(&c, fl, rsp)
				copy(in.Code[insnAt-hCode:], code)
				in.Regs.Rip = insnAt
				native := h.run(t, in)
				runs++
				if native.Sig != uint64(syscall.SIGTRAP) {
					t.Errorf("%s: native run got signal %d at %#x", name, native.Sig, native.Regs.Rip)
					continue
				}
				if p.Kind == Emulate {
					checkEmulate(t, name, p, in, native)
				}
				if !p.relocatable {
					continue
				}
				for _, slotAddr := range []uint64{hCode + 0x800, hSlot + 0x40} {
					sin := startState(&c, fl, rsp)
					copy(sin.Code[insnAt-hCode:], code)
					sin.Code[insnAt-hCode] = 0xcc // the breakpoint
					sc, err := p.SlotCode(insnAt, slotAddr)
					if err != nil || len(sc) > MaxSlotSize {
						t.Errorf("%s: SlotCode(%#x): %d bytes, %v", name, slotAddr, len(sc), err)
						continue
					}
					if slotAddr >= hSlot {
						copy(sin.Slot[slotAddr-hSlot:], sc)
					} else {
						copy(sin.Code[slotAddr-hCode:], sc)
					}
					sin.Regs.Rip = slotAddr
					got := h.run(t, sin)
					runs++
					compare(t, fmt.Sprintf("%s slot %#x", name, slotAddr), native, got)
				}
			}
		}
	}
	t.Logf("%d harness runs", runs)
}

// checkEmulate applies the plan to the start state in the tracer's model and
// compares it with the native run.
func checkEmulate(t *testing.T, name string, p *Plan, in *hIn, native *hOut) {
	t.Helper()
	code, slot, data, stack := in.Code, in.Slot, in.Data, in.Stack
	mem := pageMem{hCode: &code, hSlot: &slot, hData: &data, hStack: &stack}
	regs := toPtrace(&in.Regs)
	if err := p.Emulate(&regs, mem); err != nil {
		t.Errorf("%s: Emulate: %v", name, err)
		return
	}
	got := &hOut{Sig: uint64(syscall.SIGTRAP), Data: data, Stack: stack}
	for i := range got.Regs.R {
		got.Regs.R[i] = *slot64(&regs, uint8(i))
	}
	got.Regs.Rflags, got.Regs.Rip = regs.Eflags, regs.Rip
	compare(t, name+" emulated", native, got)
}

// compare reports every difference of registers, arithmetic flags, rip,
// signal and the data and stack pages between want and got.
func compare(t *testing.T, name string, want, got *hOut) {
	t.Helper()
	var diffs []string
	if want.Sig != got.Sig {
		diffs = append(diffs, fmt.Sprintf("signal %d, want %d", got.Sig, want.Sig))
	}
	for i := range want.Regs.R {
		if want.Regs.R[i] != got.Regs.R[i] {
			diffs = append(diffs, fmt.Sprintf("%s %#x, want %#x", regNames[i], got.Regs.R[i], want.Regs.R[i]))
		}
	}
	if want.Regs.Rip != got.Regs.Rip {
		diffs = append(diffs, fmt.Sprintf("rip %#x, want %#x", got.Regs.Rip, want.Regs.Rip))
	}
	if w, g := want.Regs.Rflags&arithFlags, got.Regs.Rflags&arithFlags; w != g {
		diffs = append(diffs, fmt.Sprintf("flags %#x, want %#x", g, w))
	}
	for _, pg := range []struct {
		name      string
		base      uint64
		want, got *[page]byte
	}{{"data", hData, &want.Data, &got.Data}, {"stack", hStack, &want.Stack, &got.Stack}} {
		for i := range pg.want {
			if pg.want[i] != pg.got[i] {
				diffs = append(diffs, fmt.Sprintf("%s byte %#x: %#02x, want %#02x", pg.name, pg.base+uint64(i), pg.got[i], pg.want[i]))
				break
			}
		}
	}
	if len(diffs) > 0 {
		t.Errorf("%s: %s", name, strings.Join(diffs, "; "))
	}
}

// TestMeaningDetectsWrongSlot makes sure the harness notices a wrong plan: a
// slot that skips the instruction must differ from the native run.
func TestMeaningDetectsWrongSlot(t *testing.T) {
	h := startHarness(t)
	c := mcase{hex: riprel("488905", hData+0x88, "")}
	code, _ := hex.DecodeString(c.hex)
	in := startState(&c, 0, hStack+0x800)
	copy(in.Code[insnAt-hCode:], code)
	in.Regs.Rip = insnAt
	native := h.run(t, in)
	// A slot holding only the jump back: the store does not happen.
	bogus := &Plan{Insn: []byte{}, Len: 0, relocatable: true, dispOff: -1}
	sc, err := bogus.SlotCode(insnAt+uint64(len(code)), hCode+0x800)
	if err != nil {
		t.Fatal(err)
	}
	sin := startState(&c, 0, hStack+0x800)
	copy(sin.Code[0x800:], sc)
	sin.Regs.Rip = hCode + 0x800
	got := h.run(t, sin)
	if got.Sig != native.Sig || got.Regs.Rip != native.Regs.Rip || got.Data == native.Data {
		t.Fatalf("harness did not see the missing store: native %+v / %+v", native.Regs, got.Regs)
	}
}

func decodeHex(s string) ([]byte, error) { return hex.DecodeString(s) }
