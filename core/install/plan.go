package install

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/arch/x86/x86asm"
)

// Kind says how a hit steps over the probed instruction.
type Kind int

const (
	// Emulate: the tracer applies the instruction's effect to the registers
	// (and the stack) with Plan.Emulate; no instruction runs in the tracee.
	Emulate Kind = iota + 1
	// Slot: the tracee runs the instruction out of line, in a slot holding
	// Plan.SlotCode, which jumps back to the next instruction.
	Slot
)

func (k Kind) String() string {
	switch k {
	case Emulate:
		return "emulate"
	case Slot:
		return "slot"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// MaxInsnLen is the longest x86 instruction.
const MaxInsnLen = 15

// Plan is how a hit steps over one probed instruction. It is immutable once
// returned by Analyze or AnalyzeBytes and safe for concurrent use.
type Plan struct {
	Offset uint64 // file offset of the instruction (0 from AnalyzeBytes)
	Insn   []byte // the instruction's bytes from the file; Insn[0] is the byte int3 replaces
	Len    int    // len(Insn)
	Kind   Kind   // Emulate or Slot
	// Class names the step-over class: "nop", "endbr64", "push", "mov",
	// "lea", "addsub-rsp", "jmp", "jmp-indirect", "call", "call-indirect",
	// "jcc", "loop", "ret" (Kind Emulate), or "slot", "slot-riprel" (Kind
	// Slot; the latter has a RIP-relative operand rewritten for the slot).
	Class string
	// Asm is the instruction in GNU syntax, for display.
	Asm string
	// Jump, when not nil, is how a jump site may replace this probe (set
	// by core/objfile, which knows the containing function: JumpAt).
	Jump *JumpPlan
	// NoJump is else why not (a short reason, status shows "trap:
	// NoJump"), "" when Jump != nil. Both are zero in a plan from
	// AnalyzeBytes alone (no file, no decision).
	NoJump string

	op     emuOp
	inst   x86asm.Inst
	dst    gpr // destination register (mov, lea, addsub) or pushed register
	src    gpr // source register (mov), target register (indirect branch)
	mem    x86asm.Mem
	useMem bool  // indirect branch through memory
	imm    int64 // add/sub immediate, ret pop count, branch displacement
	// dispOff is the offset in Insn of the RIP-relative disp32, -1 if none.
	dispOff int
	// relocatable reports whether SlotCode can relocate the instruction.
	relocatable bool
}

func (p *Plan) String() string {
	return fmt.Sprintf("%s %s [% x] (%s)", p.Kind, p.Class, p.Insn, p.Asm)
}

// InsnLen returns the length of the instruction at the start of code, or an
// error if it cannot be decoded.
func InsnLen(code []byte) (int, error) {
	if isEndbr(code) {
		return 4, nil
	}
	inst, err := decode(code)
	if err != nil {
		return 0, err
	}
	return inst.Len, nil
}

// decode decodes the instruction at the start of code in 64-bit mode. An
// instruction's length depends on its own bytes only, so the decoding is
// repeated with other bytes after it and must give the same instruction:
// this refuses truncated instructions that x86asm accepts (seen with EVEX).
func decode(code []byte) (x86asm.Inst, error) {
	if n := vzeroLen(code); n > 0 {
		// Give x86asm the ModRM byte it wants, then the true length.
		var buf [MaxInsnLen]byte
		copy(buf[:], code[:n])
		buf[n] = 0xc0
		inst, err := x86asm.Decode(buf[:], 64)
		if err != nil || (inst.Op != x86asm.VZEROUPPER && inst.Op != x86asm.VZEROALL) {
			return inst, errors.New("unknown instruction")
		}
		inst.Len = n
		return inst, nil
	}
	inst, err := x86asm.Decode(code, 64)
	if err != nil {
		return inst, err
	}
	if inst.Op == 0 || inst.Len == 0 || inst.Len > len(code) || inst.Len > MaxInsnLen {
		return inst, errors.New("unknown instruction")
	}
	var buf [2 * MaxInsnLen]byte
	for _, fill := range [...]byte{0x00, 0xff} {
		n := copy(buf[:], code[:inst.Len])
		for i := n; i < len(buf); i++ {
			buf[i] = fill
		}
		again, err := x86asm.Decode(buf[:], 64)
		if err != nil || again.Op != inst.Op || again.Len != inst.Len {
			return inst, errors.New("truncated or ambiguous instruction")
		}
	}
	return inst, nil
}

// vzeroLen returns the length of the vzeroupper or vzeroall (VEX 0f 77)
// at the start of code, or 0 if there is none. They have no ModRM byte, but
// x86asm reads one: "c5 f8 77 c3" (vzeroupper; ret) decoded as one 4-byte
// instruction, and "c5 f8 77 90" not at all, so that every instruction
// after one was misread (a ret of runtime.memclrNoHeapPointers in every Go
// binary was missed: objfile's TestReturnsGo). decode handles them first.
func vzeroLen(code []byte) int {
	switch {
	case len(code) >= 3 && code[0] == 0xc5 && code[1]&0x7b == 0x78 && code[2] == 0x77:
		// c5 RvvvvLpp 77, vvvv = 1111, pp = 00
		return 3
	case len(code) >= 4 && code[0] == 0xc4 && code[1]&0x1f == 1 && code[2]&0x7b == 0x78 && code[3] == 0x77:
		// c4 RXBmmmmm WvvvvLpp 77, map 0f
		return 4
	}
	return 0
}

// isEndbr reports whether code starts with endbr64 or endbr32, which
// x86asm does not know.
func isEndbr(code []byte) bool {
	return len(code) >= 4 && code[0] == 0xf3 && code[1] == 0x0f && code[2] == 0x1e && (code[3] == 0xfa || code[3] == 0xfb)
}

// refused builds an ErrRefused error.
func refused(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrRefused)
}

// AnalyzeBytes analyses the instruction at the start of code (extra bytes
// after it are ignored) without any boundary check, and returns its
// step-over plan or an error wrapping ErrRefused with the reason.
func AnalyzeBytes(code []byte) (*Plan, error) {
	if len(code) > MaxInsnLen {
		code = code[:MaxInsnLen]
	}
	if isEndbr(code) {
		p := &Plan{Insn: append([]byte(nil), code[:4]...), Len: 4, Kind: Emulate, Class: "endbr64", Asm: "endbr64",
			op: opNop, dispOff: -1, relocatable: true}
		if code[3] == 0xfb {
			p.Class, p.Asm = "nop", "endbr32"
		}
		return p, nil
	}
	inst, err := decode(code)
	if err != nil {
		return nil, refused("undecodable bytes [% x] (%v)", code[:min(len(code), 4)], err)
	}
	p := &Plan{Insn: append([]byte(nil), code[:inst.Len]...), Len: inst.Len, inst: inst, dispOff: -1,
		Asm: x86asm.GNUSyntax(inst, 0, nil)}
	if err := p.check(); err != nil {
		return nil, err
	}
	if err := p.classify(); err != nil {
		return nil, err
	}
	return p, nil
}

// prefixes returns the legacy and REX prefix bytes at the start of the
// instruction.
func (p *Plan) prefixes() []byte {
	i := 0
	for ; i < len(p.Insn)-1; i++ {
		switch c := p.Insn[i]; {
		case c == 0x26, c == 0x2e, c == 0x36, c == 0x3e, c == 0x64, c == 0x65,
			c == 0x66, c == 0x67, c == 0xf0, c == 0xf2, c == 0xf3, c&0xf0 == 0x40:
			continue
		}
		break
	}
	return p.Insn[:i]
}

func (p *Plan) hasPrefix(b byte) bool {
	for _, c := range p.prefixes() {
		if c == b {
			return true
		}
	}
	return false
}

// check refuses what the kernel's uprobes refuse.
func (p *Plan) check() error {
	for _, c := range p.prefixes() {
		switch c {
		case 0x26, 0x2e, 0x36, 0x3e:
			seg := map[byte]string{0x26: "es", 0x2e: "cs", 0x36: "ss", 0x3e: "ds"}[c]
			return refused("%s: %s segment prefix (%#02x), which uprobes refuse", p.Asm, seg, c)
		case 0xf0:
			return refused("%s: lock prefix, which uprobes refuse", p.Asm)
		}
	}
	in := &p.inst
	switch in.Op {
	case x86asm.INT:
		if a, ok := in.Args[0].(x86asm.Imm); ok && a == 3 {
			return refused("int3: a breakpoint already")
		}
		return refused("%s: software interrupt", p.Asm)
	case x86asm.INTO:
		return refused("into: software interrupt")
	case x86asm.ICEBP:
		return refused("icebp (int1): debug trap")
	case x86asm.IRET, x86asm.IRETD, x86asm.IRETQ:
		return refused("%s: interrupt return", p.Asm)
	case x86asm.IN, x86asm.OUT, x86asm.INSB, x86asm.INSW, x86asm.INSD, x86asm.OUTSB, x86asm.OUTSW, x86asm.OUTSD:
		return refused("%s: port I/O", p.Asm)
	case x86asm.HLT:
		return refused("hlt: privileged")
	case x86asm.CLI, x86asm.STI:
		return refused("%s: changes the interrupt flag", p.Asm)
	case x86asm.SYSCALL, x86asm.SYSENTER, x86asm.SYSEXIT, x86asm.SYSRET:
		return refused("%s: system call instruction (out of line it would return into the slot's page)", p.Asm)
	case x86asm.UD0, x86asm.UD1, x86asm.UD2:
		return refused("%s: undefined instruction (raises SIGILL on purpose)", p.Asm)
	case x86asm.LJMP, x86asm.LCALL:
		return refused("%s: far jump or call", p.Asm)
	case x86asm.XBEGIN:
		return refused("%s: transaction begin with a relative abort address", p.Asm)
	case x86asm.MOV:
		if r, ok := in.Args[0].(x86asm.Reg); ok && r == x86asm.SS {
			return refused("%s: mov to ss masks interrupts and traps", p.Asm)
		}
	case x86asm.POP:
		if r, ok := in.Args[0].(x86asm.Reg); ok && r == x86asm.SS {
			return refused("%s: pop to ss masks interrupts and traps", p.Asm)
		}
	}
	return nil
}

// classify chooses the step-over plan of an instruction check accepted.
func (p *Plan) classify() error {
	in := &p.inst
	branchPrefix := func() error {
		if p.hasPrefix(0x66) {
			return refused("%s: operand-size prefix on a branch", p.Asm)
		}
		return nil
	}
	emulate := func(class string, op emuOp) error {
		p.Kind, p.Class, p.op = Emulate, class, op
		return nil
	}
	switch in.Op {
	case x86asm.NOP, x86asm.PAUSE:
		// Multi-byte nops have a memory operand that is never accessed.
		if in.Op == x86asm.PAUSE {
			break
		}
		p.relocatable = true
		return emulate("nop", opNop)
	case x86asm.PUSH:
		if r, ok := gprOf(in.Args[0]); ok && r.size == 8 {
			p.src, p.relocatable = r, true
			return emulate("push", opPush)
		}
	case x86asm.MOV:
		d, ok1 := gprOf(in.Args[0])
		s, ok2 := gprOf(in.Args[1])
		if ok1 && ok2 && d.size == s.size {
			p.dst, p.src, p.relocatable = d, s, true
			return emulate("mov", opMov)
		}
	case x86asm.LEA:
		d, ok1 := gprOf(in.Args[0])
		m, ok2 := in.Args[1].(x86asm.Mem)
		if ok1 && ok2 && d.size >= 2 && p.memOK(m) {
			p.dst, p.mem = d, m
			p.relocatable = m.Base != x86asm.RIP
			return emulate("lea", opLea)
		}
	case x86asm.ADD, x86asm.SUB:
		if r, ok := in.Args[0].(x86asm.Reg); ok && r == x86asm.RSP {
			if imm, ok := in.Args[1].(x86asm.Imm); ok {
				p.dst, _ = gprOf(r)
				p.imm = int64(imm)
				p.relocatable = true
				if in.Op == x86asm.SUB {
					return emulate("addsub-rsp", opSubRsp)
				}
				return emulate("addsub-rsp", opAddRsp)
			}
		}
	case x86asm.JMP, x86asm.CALL:
		if err := branchPrefix(); err != nil {
			return err
		}
		class, op := "jmp", opJmp
		if in.Op == x86asm.CALL {
			class, op = "call", opCall
		}
		switch a := in.Args[0].(type) {
		case x86asm.Rel:
			p.imm = int64(a)
			return emulate(class, op)
		case x86asm.Reg:
			if r, ok := gprOf(a); ok && r.size == 8 {
				p.src = r
				return emulate(class+"-indirect", op+1)
			}
		case x86asm.Mem:
			if p.memOK(a) {
				p.mem, p.useMem = a, true
				return emulate(class+"-indirect", op+1)
			}
		}
		return refused("%s: unsupported branch operand", p.Asm)
	case x86asm.JO, x86asm.JNO, x86asm.JB, x86asm.JAE, x86asm.JE, x86asm.JNE, x86asm.JBE, x86asm.JA,
		x86asm.JS, x86asm.JNS, x86asm.JP, x86asm.JNP, x86asm.JL, x86asm.JGE, x86asm.JLE, x86asm.JG:
		if err := branchPrefix(); err != nil {
			return err
		}
		a, ok := in.Args[0].(x86asm.Rel)
		if !ok {
			return refused("%s: unsupported branch operand", p.Asm)
		}
		p.imm = int64(a)
		return emulate("jcc", opJcc)
	case x86asm.JRCXZ, x86asm.JECXZ, x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE:
		if err := branchPrefix(); err != nil {
			return err
		}
		a, ok := in.Args[0].(x86asm.Rel)
		if !ok {
			return refused("%s: unsupported branch operand", p.Asm)
		}
		// The address-size prefix makes jrcxz jecxz (emulated); on loop it
		// makes the counter ecx, which is not emulated.
		if in.Op != x86asm.JECXZ && in.Op != x86asm.JRCXZ && p.hasPrefix(0x67) {
			return refused("%s: address-size prefix on a loop", p.Asm)
		}
		p.imm = int64(a)
		return emulate("loop", opLoop)
	case x86asm.RET:
		if err := branchPrefix(); err != nil {
			return err
		}
		if a, ok := in.Args[0].(x86asm.Imm); ok {
			p.imm = int64(a)
		}
		return emulate("ret", opRet)
	}
	// Out of line. Relative branches of any kind cannot run in a slot.
	for _, a := range in.Args {
		if _, ok := a.(x86asm.Rel); ok {
			return refused("%s: relative branch that can be neither emulated nor relocated", p.Asm)
		}
	}
	p.Kind, p.Class, p.relocatable = Slot, "slot", true
	off, err := p.ripDisp()
	if err != nil {
		return err
	}
	if off >= 0 {
		p.dispOff, p.Class = off, "slot-riprel"
	}
	return nil
}

// memOK reports whether the emulator can compute the address of m.
func (p *Plan) memOK(m x86asm.Mem) bool {
	ok := func(r x86asm.Reg) bool {
		if r == 0 || r == x86asm.RIP {
			return true
		}
		g, ok := gprOf(r)
		return ok && g.size == 8
	}
	if m.Segment != 0 && m.Segment != x86asm.FS && m.Segment != x86asm.GS {
		return false
	}
	return p.inst.AddrSize == 64 && ok(m.Base) && ok(m.Index) && m.Index != x86asm.RIP
}

// ripDisp returns the offset in Insn of the RIP-relative disp32 of the
// instruction, or -1 if it has none. x86asm reports RIP-relative operands
// of legacy encodings; for VEX and EVEX encodings the ModRM byte is found
// here. An EIP-relative operand (address-size prefix) is refused.
func (p *Plan) ripDisp() (int, error) {
	in := &p.inst
	pre := len(p.prefixes())
	modrm := -1
	switch c := p.Insn[pre]; c {
	case 0xc5: // VEX2: c5 xx opcode (map 0f)
		if pre+3 < len(p.Insn) && p.Insn[pre+2] != 0x77 {
			modrm = pre + 3
		}
	case 0xc4: // VEX3: c4 xx xx opcode
		if pre+4 < len(p.Insn) && !(p.Insn[pre+1]&0x1f == 1 && p.Insn[pre+3] == 0x77) {
			modrm = pre + 4
		}
	case 0x62: // EVEX: 62 xx xx xx opcode
		if pre+5 < len(p.Insn) {
			modrm = pre + 5
		}
	}
	if modrm >= 0 {
		if p.Insn[modrm]&0xc7 != 0x05 {
			return -1, nil
		}
		if p.hasPrefix(0x67) {
			return -1, refused("%s: eip-relative operand (address-size prefix)", p.Asm)
		}
		if modrm+5 > len(p.Insn) {
			return -1, refused("%s: cannot locate the rip-relative displacement", p.Asm)
		}
		return modrm + 1, nil
	}
	rip := false
	for _, a := range in.Args {
		if m, ok := a.(x86asm.Mem); ok && (m.Base == x86asm.RIP || m.Base == x86asm.EIP) {
			rip = true
			if m.Base == x86asm.EIP {
				return -1, refused("%s: eip-relative operand (address-size prefix)", p.Asm)
			}
		}
	}
	if !rip {
		return -1, nil
	}
	o := in.PCRelOff
	if in.PCRel != 4 || o <= pre || o+4 > len(p.Insn) || p.Insn[o-1]&0xc7 != 0x05 {
		return -1, refused("%s: cannot locate the rip-relative displacement", p.Asm)
	}
	for _, a := range in.Args {
		if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.RIP && int64(int32(binary.LittleEndian.Uint32(p.Insn[o:]))) != m.Disp {
			return -1, refused("%s: cannot locate the rip-relative displacement", p.Asm)
		}
	}
	return o, nil
}
