package install

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/arch/x86/x86asm"
)

// Jump sites. A jump site replaces the whole instructions at a probe
// address that cover at least 5 bytes by a `jmp rel32` into a trampoline
// (tramp.go), which counts the hit and runs those instructions relocated,
// then jumps back. AnalyzeJump decides from the bytes alone whether the
// displaced instructions can be relocated exactly (the rules of the
// kernel's can_optimize/copy_optimized_instructions, stricter where we
// cannot be sure); core/objfile adds the rules that need the whole file
// (no branch into the displaced range, no jump table in the function).

// JumpLen is the length of the jmp rel32 that a jump site writes.
const JumpLen = 5

// JumpPlan is how a 5-byte jmp rel32 at a probe address replaces the
// whole instructions it covers (Len >= 5 bytes). Immutable, safe for
// concurrent use.
type JumpPlan struct {
	Len  int      // bytes displaced: whole instructions, >= 5
	Orig []byte   // those bytes as in the file
	Asm  []string // each displaced instruction, GNU syntax, for display

	insns []jinsn
}

// jkind is how one displaced instruction is relocated.
type jkind uint8

const (
	jPlain jkind = iota + 1 // copied; a RIP-relative disp32 rewritten
	jJcc                    // re-encoded to its absolute target
	jJmp                    // re-encoded to its absolute target; last
	jCall                   // push of the original return address + jmp; last
	jRet                    // copied; last
)

// jinsn is one displaced instruction.
type jinsn struct {
	off     int // offset from the probe address
	insn    []byte
	kind    jkind
	cc      byte  // jJcc: the condition code (low nibble of the opcode)
	target  int64 // jJcc, jJmp, jCall: branch target; jPlain with dispOff >= 0: data target (from the probe address)
	dispOff int   // jPlain: offset in insn of the RIP-relative disp32, -1 if none
	// noAccess: the memory operand is not accessed (lea, nop).
	noAccess bool
}

// String shows the plan for logs: "jump 5 bytes: push %rbp; mov %rsp,%rbp".
func (j *JumpPlan) String() string {
	return fmt.Sprintf("jump %d bytes: %s", j.Len, strings.Join(j.Asm, "; "))
}

// EndsInBranch reports whether the last displaced instruction is a ret,
// jmp or call, so the trampoline does not jump back to the site.
func (j *JumpPlan) EndsInBranch() bool {
	k := j.insns[len(j.insns)-1].kind
	return k == jJmp || k == jCall || k == jRet
}

// EmulatesCall reports whether the last displaced instruction is a call,
// which the trampoline emulates (push of the return address + jmp): the
// callee's ret then finds no matching entry on a CET shadow stack, so a
// thread with a shadow stack must not run this trampoline (the runtime
// keeps the trap path there, where branch slots run calls for real).
func (j *JumpPlan) EmulatesCall() bool { return j.insns[len(j.insns)-1].kind == jCall }

// RefusalReason returns the short reason of an error that wraps ErrRefused
// ("syscall in the displaced range"), as status shows it after "trap: ".
func RefusalReason(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if errors.Is(err, ErrRefused) {
		s = strings.TrimSuffix(s, ": "+ErrRefused.Error())
	}
	return s
}

// AnalyzeJump decides whether the instructions at the start of code (the
// bytes from the probe offset to the end of its function, or fewer) can be
// displaced by a jump site: whole instructions covering >= 5 bytes, each
// one relocatable. RIP-relative operands are re-encoded; jcc and jmp are
// re-encoded to absolute targets; a call is emulated as a push of the
// original return address and a jmp, and only as the last displaced
// instruction (its return address, start+Len, is then outside the range);
// ret and jmp only as the last one. Refused: system calls, software
// interrupts and traps, hlt, ud*, far and indirect branches, loop/jrcxz,
// xbegin, a branch or RIP-relative operand into the displaced bytes
// themselves, a 16-bit operand or address-size prefix on a branch, and
// anything that does not decode. The error wraps ErrRefused with a short
// reason for status ("trap: REASON"), e.g. "function too short for a jump
// (3 bytes)", "syscall in the displaced range".
func AnalyzeJump(code []byte) (*JumpPlan, error) {
	j := &JumpPlan{}
	pos := 0
	for pos < JumpLen {
		if pos >= len(code) {
			return nil, refused("function too short for a jump (%d bytes)", len(code))
		}
		in, err := jumpInsn(code[pos:min(len(code), pos+MaxInsnLen)], pos)
		if err != nil {
			return nil, err
		}
		end := pos + len(in.insn)
		last := end >= JumpLen
		switch in.kind {
		case jJmp, jRet:
			if !last {
				return nil, refused("function too short for a jump (%s after %d bytes)", in.name(), end)
			}
		case jCall:
			if !last {
				return nil, refused("call not last in the displaced range (at +%d)", pos)
			}
		}
		j.insns = append(j.insns, in)
		j.Asm = append(j.Asm, jumpAsm(in))
		pos = end
	}
	j.Len = pos
	j.Orig = append([]byte(nil), code[:pos]...)
	for _, in := range j.insns {
		switch {
		case in.kind == jJcc || in.kind == jJmp || in.kind == jCall:
			// A target of 0 re-enters the site (a new hit): right. One
			// inside would land between relocated instructions.
			if in.target > 0 && in.target < int64(j.Len) {
				return nil, refused("branch into the displaced range (%s at +%d to +%d)", in.name(), in.off, in.target)
			}
		case in.dispOff >= 0 && !in.noAccess:
			// The site's bytes are not what the file holds once patched.
			if in.target > -64 && in.target < int64(j.Len) {
				return nil, refused("rip-relative operand at +%d reads the displaced bytes", in.off)
			}
		}
	}
	return j, nil
}

func (in *jinsn) name() string {
	switch in.kind {
	case jJcc:
		return "jcc"
	case jJmp:
		return "jmp"
	case jCall:
		return "call"
	case jRet:
		return "ret"
	}
	return "instruction"
}

func jumpAsm(in jinsn) string {
	if isEndbr(in.insn) {
		if in.insn[3] == 0xfa {
			return "endbr64"
		}
		return "endbr32"
	}
	inst, err := decode(in.insn)
	if err != nil {
		return fmt.Sprintf("(bad % x)", in.insn)
	}
	return x86asm.GNUSyntax(inst, 0, nil)
}

// jumpInsn decodes and classifies the instruction at the start of code, at
// offset off from the probe address.
func jumpInsn(code []byte, off int) (jinsn, error) {
	if isEndbr(code) {
		return jinsn{off: off, insn: append([]byte(nil), code[:4]...), kind: jPlain, dispOff: -1}, nil
	}
	inst, err := decode(code)
	if err != nil {
		return jinsn{}, refused("undecodable bytes at +%d", off)
	}
	p := &Plan{Insn: code[:inst.Len], Len: inst.Len, inst: inst, Asm: x86asm.GNUSyntax(inst, 0, nil)}
	in := jinsn{off: off, insn: append([]byte(nil), code[:inst.Len]...), kind: jPlain, dispOff: -1}
	if why := jumpForbidden(p); why != "" {
		return jinsn{}, refused("%s in the displaced range", why)
	}
	rel := func() (int64, error) {
		if p.hasPrefix(0x66) || p.hasPrefix(0x67) {
			return 0, refused("size prefix on a branch in the displaced range")
		}
		r, ok := inst.Args[0].(x86asm.Rel)
		if !ok {
			return 0, refused("indirect %s in the displaced range", strings.ToLower(inst.Op.String()))
		}
		return int64(off+inst.Len) + int64(r), nil
	}
	switch inst.Op {
	case x86asm.JMP, x86asm.CALL:
		t, err := rel()
		if err != nil {
			return jinsn{}, err
		}
		in.kind, in.target = jJmp, t
		if inst.Op == x86asm.CALL {
			in.kind = jCall
		}
		return in, nil
	case x86asm.JO, x86asm.JNO, x86asm.JB, x86asm.JAE, x86asm.JE, x86asm.JNE, x86asm.JBE, x86asm.JA,
		x86asm.JS, x86asm.JNS, x86asm.JP, x86asm.JNP, x86asm.JL, x86asm.JGE, x86asm.JLE, x86asm.JG:
		t, err := rel()
		if err != nil {
			return jinsn{}, err
		}
		op := in.insn[len(p.prefixes())]
		if op == 0x0f {
			op = in.insn[len(p.prefixes())+1]
		}
		in.kind, in.target, in.cc = jJcc, t, op&0x0f
		return in, nil
	case x86asm.RET:
		if p.hasPrefix(0x66) {
			return jinsn{}, refused("size prefix on a ret in the displaced range")
		}
		in.kind = jRet
		return in, nil
	case x86asm.JRCXZ, x86asm.JECXZ, x86asm.JCXZ, x86asm.LOOP, x86asm.LOOPE, x86asm.LOOPNE:
		return jinsn{}, refused("%s in the displaced range", strings.ToLower(inst.Op.String()))
	}
	for _, a := range inst.Args {
		if _, ok := a.(x86asm.Rel); ok {
			return jinsn{}, refused("relative %s in the displaced range", strings.ToLower(inst.Op.String()))
		}
	}
	d, err := p.ripDisp()
	if err != nil {
		return jinsn{}, refused("rip-relative operand not relocatable at +%d", off)
	}
	if d >= 0 {
		in.dispOff, in.noAccess = d, inst.Op == x86asm.LEA || inst.Op == x86asm.NOP
		in.target = int64(off+inst.Len) + int64(int32(le32at(in.insn[d:])))
	}
	return in, nil
}

func le32at(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// jumpForbidden names an instruction that may not be displaced, or "".
func jumpForbidden(p *Plan) string {
	switch in := &p.inst; in.Op {
	case x86asm.SYSCALL, x86asm.SYSENTER, x86asm.SYSEXIT, x86asm.SYSRET:
		return strings.ToLower(in.Op.String())
	case x86asm.INT:
		if a, ok := in.Args[0].(x86asm.Imm); ok && a == 3 {
			return "int3"
		}
		return "int"
	case x86asm.INTO, x86asm.ICEBP:
		return "int"
	case x86asm.UD0, x86asm.UD1, x86asm.UD2:
		return "ud2"
	case x86asm.HLT:
		return "hlt"
	case x86asm.IRET, x86asm.IRETD, x86asm.IRETQ, x86asm.LJMP, x86asm.LCALL, x86asm.LRET:
		return "far branch"
	case x86asm.XBEGIN, x86asm.XABORT, x86asm.XEND:
		return "transaction"
	case x86asm.CLI, x86asm.STI, x86asm.IN, x86asm.OUT, x86asm.INSB, x86asm.INSW, x86asm.INSD,
		x86asm.OUTSB, x86asm.OUTSW, x86asm.OUTSD:
		return "privileged instruction"
	case x86asm.PUSHF, x86asm.PUSHFD, x86asm.PUSHFQ, x86asm.POPF, x86asm.POPFD, x86asm.POPFQ:
		// A thread single-stepped out of a trampoline (to deliver a
		// signal after it) would push the tracer's trap flag, or have
		// the kernel take a popf's for the program's.
		return "pushf/popf"
	case x86asm.MOV, x86asm.POP:
		if r, ok := in.Args[0].(x86asm.Reg); ok && r >= x86asm.ES && r <= x86asm.GS {
			return "segment register load"
		}
	}
	return ""
}
