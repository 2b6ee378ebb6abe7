package install

import (
	"encoding/binary"
	"fmt"
)

// MaxTrampSize bounds len(code) of Trampoline (a multiple of 16; the
// runtime packs trampolines at this stride in a page). The longest is the
// prologue (23 bytes), three displaced jcc rel8 each re-encoded as an
// inverted jcc over an absolute jump (8 bytes) and the absolute jump back
// (6), then up to 7 bytes of padding and 4 addresses (32): 92 bytes.
const MaxTrampSize = 128

// The templates of a trampoline (every one is decoded back in
// TestTrampTemplates).
var (
	// lea -128(%rsp),%rsp: step below the red zone (no flags touched).
	tLeaDown = [...]byte{0x48, 0x8d, 0x64, 0x24, 0x80}
	// pushfq
	tPushf = [...]byte{0x9c}
	// lock incq disp32(%rip): the counter.
	tLockInc = [...]byte{0xf0, 0x48, 0xff, 0x05}
	// popfq
	tPopf = [...]byte{0x9d}
	// lea 128(%rsp),%rsp
	tLeaUp = [...]byte{0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00}
	// push $imm32 (sign-extended): the low half of a return address.
	tPushImm = [...]byte{0x68}
	// movl $imm32,4(%rsp): its high half.
	tMovHigh = [...]byte{0xc7, 0x44, 0x24, 0x04}
	// jmp rel32; jcc rel32 is 0f 80+cc rel32; jcc rel8 is 70+cc rel8.
	tJmp32 = [...]byte{0xe9}
	// jmp *disp32(%rip): through an address at the end of the trampoline,
	// 8-byte aligned (an unaligned one faults in a thread that set the
	// alignment-check flag, as TestJumpMeaning's popfq cases showed).
	tJmpAbs = [...]byte{0xff, 0x25}
)

// tramp is a trampoline being written: the code, and the absolute jumps
// whose address goes into the pool after it.
type tramp struct {
	at   uint64
	code []byte
	pool []poolRef
	// starts are the offsets in code of the relocated displaced
	// instructions, one per instruction (OrigAt).
	starts []int
	// ps are the prologue's states, one per instruction boundary from
	// the pushfq to the popfq (TrampolineEv; trampev.go), cur the state
	// being built.
	ps  []PState
	cur PState
}

type poolRef struct {
	disp   int // offset in code of the jmp's disp32
	target uint64
}

// tEntry is the offset of the relocated instructions in every trampoline.
var tEntry = len(tLeaDown) + len(tPushf) + len(tLockInc) + 4 + len(tPopf) + len(tLeaUp)

// Trampoline returns the code of the jump site at vaddr site when the
// trampoline is placed at address at, counting hits by a lock-prefixed
// 64-bit increment of the counter at address counter:
//
//	lea -128(%rsp),%rsp ; pushfq ; lock incq counter(%rip) ; popfq ;
//	lea 128(%rsp),%rsp ; <relocated displaced instructions> ;
//	jmp site+Len (absent when the last one is a ret/jmp/call)
//
// entry is the offset in code of the relocated displaced instructions:
// the trap path sends a trapped thread there (its hit was counted by the
// tracer). Branch targets and the jump back clobber no register or flag:
// a jmp or jcc rel32 when the target is within reach, else `jmp *0(%rip)`
// and the 8-byte address (a jcc as the inverted jcc over it); a call is
// `push $lo32; movl $hi32,4(%rsp)` (the original return address, so no
// address of the trampoline is ever on the stack) then the jump to its
// target. The counter must be 8-byte aligned (a lock on a split counter
// is slow, and faults with the alignment-check flag set). Errors:
// ErrSlotRange (wrapped) when a RIP-relative operand or the counter is out
// of rel32 reach from at; ErrRefused for an unaligned counter.
func (j *JumpPlan) Trampoline(site, at, counter uint64) (code []byte, entry int, err error) {
	if counter%8 != 0 {
		return nil, 0, fmt.Errorf("trampoline at %#x: counter %#x is not 8-byte aligned: %w", at, counter, ErrRefused)
	}
	code, entry, _, err = j.trampoline(site, at, counter)
	return code, entry, err
}

// trampoline is Trampoline, and also returns the length of the code
// before the padding and the address pool (for the tests that decode it).
func (j *JumpPlan) trampoline(site, at, counter uint64) (code []byte, entry, insns int, err error) {
	code, entry, insns, _, err = j.build(site, at, counter, nil)
	return code, entry, insns, err
}

// build is trampoline, and the offsets of the relocated instructions.
func (j *JumpPlan) build(site, at, counter uint64, ev *EvMem) (code []byte, entry, insns int, starts []int, err error) {
	t := &tramp{at: at, code: make([]byte, 0, MaxTrampSize)}
	t.code = append(t.code, tLeaDown[:]...)
	t.code = append(t.code, tPushf[:]...)
	t.cur = PState{Below: 136}
	t.mark()
	if ev != nil && ev.PerCPU {
		if err := t.perCPUCount(counter); err != nil {
			return nil, 0, 0, nil, err
		}
	} else {
		t.code = append(t.code, tLockInc[:]...)
		rel, err := rel32(counter, at+uint64(len(t.code))+4)
		if err != nil {
			return nil, 0, 0, nil, fmt.Errorf("trampoline at %#x: counter: %w", at, err)
		}
		t.code = binary.LittleEndian.AppendUint32(t.code, uint32(rel))
		t.cur.Counted = true
		t.mark()
	}
	if ev != nil {
		if err := t.events(ev); err != nil {
			return nil, 0, 0, nil, err
		}
	}
	t.code = append(t.code, tPopf[:]...)
	t.code = append(t.code, tLeaUp[:]...)
	entry = len(t.code)
	for _, in := range j.insns {
		t.starts = append(t.starts, len(t.code))
		target := site + uint64(in.target)
		switch in.kind {
		case jPlain, jRet:
			n := len(t.code)
			t.code = append(t.code, in.insn...)
			if in.dispOff >= 0 {
				rel, err := rel32(target, at+uint64(len(t.code)))
				if err != nil {
					return nil, 0, 0, nil, fmt.Errorf("trampoline at %#x: rip-relative operand of %s at %#x: %w",
						at, jumpAsm(in), site+uint64(in.off), err)
				}
				binary.LittleEndian.PutUint32(t.code[n+in.dispOff:], uint32(rel))
			}
		case jJcc:
			if rel, err := rel32(target, at+uint64(len(t.code))+6); err == nil {
				t.code = append(t.code, 0x0f, 0x80|in.cc)
				t.code = binary.LittleEndian.AppendUint32(t.code, uint32(rel))
			} else {
				t.code = append(t.code, 0x70|in.cc^1, byte(len(tJmpAbs)+4))
				t.absJmp(target)
			}
		case jCall:
			ret := site + uint64(in.off+len(in.insn))
			t.code = append(t.code, tPushImm[:]...)
			t.code = binary.LittleEndian.AppendUint32(t.code, uint32(ret))
			t.code = append(t.code, tMovHigh[:]...)
			t.code = binary.LittleEndian.AppendUint32(t.code, uint32(ret>>32))
			t.jmp(target)
		case jJmp:
			t.jmp(target)
		}
	}
	if !j.EndsInBranch() {
		t.jmp(site + uint64(j.Len))
	}
	insns = len(t.code)
	code = t.finish()
	if max := MaxTrampSize; len(code) > max && (ev == nil || len(code) > MaxTrampEvSize) {
		return nil, 0, 0, nil, fmt.Errorf("trampoline for %v: %d bytes, over %d: %w", j, len(code), MaxTrampSize, ErrRefused)
	}
	return code, entry, insns, t.starts, nil
}

// jmp appends a jump to target: jmp rel32 when in reach, else the
// absolute form.
func (t *tramp) jmp(target uint64) {
	if rel, err := rel32(target, t.at+uint64(len(t.code))+5); err == nil {
		t.code = append(t.code, tJmp32[:]...)
		t.code = binary.LittleEndian.AppendUint32(t.code, uint32(rel))
		return
	}
	t.absJmp(target)
}

// absJmp appends `jmp *disp32(%rip)` through a pool address.
func (t *tramp) absJmp(target uint64) {
	t.code = append(t.code, tJmpAbs[:]...)
	t.pool = append(t.pool, poolRef{disp: len(t.code), target: target})
	t.code = append(t.code, 0, 0, 0, 0)
}

// finish pads the code with int3 to an 8-byte aligned address, appends the
// pool and fills in the displacements.
func (t *tramp) finish() []byte {
	if len(t.pool) == 0 {
		return t.code
	}
	for (t.at+uint64(len(t.code)))%8 != 0 {
		t.code = append(t.code, 0xcc)
	}
	for _, r := range t.pool {
		binary.LittleEndian.PutUint32(t.code[r.disp:], uint32(int32(len(t.code)-(r.disp+4))))
		t.code = binary.LittleEndian.AppendUint64(t.code, r.target)
	}
	return t.code
}

// JumpInsn returns the 5 bytes of `jmp rel32` at site to target, or an
// error wrapping ErrSlotRange when out of reach.
func JumpInsn(site, target uint64) ([]byte, error) {
	rel, err := rel32(target, site+JumpLen)
	if err != nil {
		return nil, fmt.Errorf("jump site at %#x: %w", site, err)
	}
	return binary.LittleEndian.AppendUint32(append([]byte(nil), tJmp32[:]...), uint32(rel)), nil
}
