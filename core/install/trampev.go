package install

import (
	"encoding/binary"
	"fmt"
	"maps"

	"golang.org/x/arch/x86/x86asm"
)

// Events from trampolines. A trampoline made with an EvMem (TrampolineEv)
// also appends a record of each hit to a ring in memory shared with the
// daemon while the site's flag word is not zero (someone reads the probe's
// events), between the count and the popfq:
//
//	cmpq $0,flag(%rip); je 1f
//	push %rax; push %rcx; push %rdx; push %rsi
//	mov $1,%ecx; lock xadd %rcx,head(%rip)      claim record number n
//	rdtsc; shl $32,%rdx; or %rdx,%rax           the time stamp counter
//	mov %rcx,%rdx; and $mask,%edx; shl $5,%rdx; lea ring(%rip),%rsi; add %rsi,%rdx
//	mov %rax,8(%rdx); rdfsbase %rax; mov %rax,16(%rdx)   TSC, the thread's fs base
//	movq $id,24(%rdx); inc %rcx; mov %rcx,(%rdx)          site id, then n+1: published
//	pop %rsi; pop %rdx; pop %rcx; pop %rax
//	1:
//
// A record is EvRecSize bytes: n+1 (written last: x86 stores are seen in
// order), TSC, fs base, site id. A writer laps a reader that falls behind
// by more than the ring: the reader finds another n+1 in the slot and
// counts the record lost. rdfsbase needs the kernel's FSGSBASE (AT_HWCAP2
// bit 1); the runtime checks before it makes such trampolines.

// EvMem is where a trampoline's events go.
type EvMem struct {
	Counter uint64 // the hit counter (as for Trampoline)
	Flag    uint64 // 8-byte flag word: records are appended while not 0
	Head    uint64 // 8-byte count of records claimed
	Ring    uint64 // the ring: Mask+1 records
	Mask    uint32 // records in the ring minus one (a power of two minus one)
	ID      uint32 // the site's id, as records carry it (below 2^31)
	// PerCPU: the counter is EvCPUSlots counters EvCPUStride bytes apart
	// (a cache line each), the one of the CPU the thread runs on (rdpid:
	// the CPU needs it) incremented, so that threads on different CPUs
	// do not share a line; the count is their sum.
	PerCPU bool
}

// The per-CPU counters of a site (EvMem.PerCPU): the CPU number modulo
// EvCPUSlots picks one.
const (
	EvCPUSlots  = 16
	EvCPUStride = 64
)

// perCPUCount appends the per-CPU count (EvMem.PerCPU):
//
//	push %rax; push %rdx; rdpid %rax; and $15,%eax; shl $6,%eax
//	lea counter(%rip),%rdx; lock incq (%rdx,%rax); pop %rdx; pop %rax
//
// (locked still: a thread may move to another CPU between the rdpid and
// the increment).
func (t *tramp) perCPUCount(counter uint64) error {
	t.push(x86asm.RAX)
	t.push(x86asm.RDX)
	t.code = append(t.code, 0xf3, 0x0f, 0xc7, 0xf8) // rdpid %rax
	t.mark()
	t.code = append(t.code, 0x83, 0xe0, EvCPUSlots-1) // and $15,%eax
	t.mark()
	t.code = append(t.code, 0xc1, 0xe0, 6) // shl $6,%eax (EvCPUStride)
	t.mark()
	rel, err := rel32(counter, t.at+uint64(len(t.code))+7)
	if err != nil {
		return fmt.Errorf("trampoline at %#x: counter: %w", t.at, err)
	}
	t.code = binary.LittleEndian.AppendUint32(append(t.code, 0x48, 0x8d, 0x15), uint32(rel)) // lea counter(%rip),%rdx
	t.mark()
	t.code = append(t.code, 0xf0, 0x48, 0xff, 0x04, 0x02) // lock incq (%rdx,%rax)
	t.cur.Counted = true
	t.mark()
	t.pop(x86asm.RDX)
	t.pop(x86asm.RAX)
	return nil
}

// EvRecSize is the size of an event record.
const EvRecSize = 32

// MaxTrampEvSize bounds len(code) of TrampolineEv (the runtime's stride).
const MaxTrampEvSize = 256

// TrampolineEv is Trampoline with events (above). popf is the offset of the
// prologue's popfq: a thread stopped between the pushfq (offset
// TrampPushfEnd) and it is inside the counting and event code.
func (j *JumpPlan) TrampolineEv(site, at uint64, ev EvMem) (code []byte, entry, popf int, err error) {
	code, entry, _, _, err = j.build(site, at, ev.Counter, &ev)
	if err != nil {
		return nil, 0, 0, err
	}
	return code, entry, entry - len(tPopf) - len(tLeaUp), nil
}

// PState is what the instructions of a trampoline's prologue before an
// instruction boundary did (from the pushfq to the popfq): with it the
// tracer moves a thread stopped there (a signal) out of the prologue
// without running it: back to the site, or on to the entry.
type PState struct {
	Off   int    // the boundary's offset in the trampoline
	Below uint64 // rsp is this far below the program's; the flags pushed at rsp+Below-136
	// Saved are the registers pushed and not yet popped, by their
	// offset from rsp (x86asm register: RAX, RCX, RDX, RSI).
	Saved map[x86asm.Reg]uint64
	// Counted: the hit is counted. Claimed: an event record is claimed
	// (its number is rcx, or rcx-1 after the inc: Inc), not published;
	// Published: it is.
	Counted, Claimed, Inc, Published bool
}

// PrologueStates returns the states of the prologue of TrampolineEv's
// code for the same arguments, by offset.
func (j *JumpPlan) PrologueStates(site, at uint64, ev EvMem) (map[int]PState, error) {
	t, err := j.prologue(site, at, ev)
	if err != nil {
		return nil, err
	}
	m := map[int]PState{}
	for _, s := range t.ps {
		m[s.Off] = s
	}
	return m, nil
}

// prologue builds the trampoline's code, to keep its states.
func (j *JumpPlan) prologue(site, at uint64, ev EvMem) (*tramp, error) {
	t := &tramp{at: at}
	t.code = append(t.code, tLeaDown[:]...)
	t.code = append(t.code, tPushf[:]...)
	t.cur = PState{Below: 136}
	t.mark()
	if ev.PerCPU {
		if err := t.perCPUCount(ev.Counter); err != nil {
			return nil, err
		}
	} else {
		t.code = append(t.code, tLockInc[:]...)
		t.code = append(t.code, 0, 0, 0, 0)
		t.cur.Counted = true
		t.mark()
	}
	if err := t.events(&ev); err != nil {
		return nil, err
	}
	return t, nil
}

// mark records the state at the end of the code so far.
func (t *tramp) mark() {
	s := t.cur
	s.Off = len(t.code)
	s.Saved = maps.Clone(t.cur.Saved)
	t.ps = append(t.ps, s)
}

// push and pop append the one-byte push or pop of r (one of rax..rdi),
// track it in the state and mark.
func (t *tramp) push(r x86asm.Reg) {
	t.code = append(t.code, 0x50+byte(r-x86asm.RAX))
	if t.cur.Saved == nil {
		t.cur.Saved = map[x86asm.Reg]uint64{}
	}
	for k, v := range t.cur.Saved {
		t.cur.Saved[k] = v + 8
	}
	t.cur.Saved[r] = 0
	t.cur.Below += 8
	t.mark()
}

func (t *tramp) pop(r x86asm.Reg) {
	t.code = append(t.code, 0x58+byte(r-x86asm.RAX))
	delete(t.cur.Saved, r)
	for k, v := range t.cur.Saved {
		t.cur.Saved[k] = v - 8
	}
	t.cur.Below -= 8
	t.mark()
}

// TrampPushfEnd is the offset after the pushfq in every trampoline.
var TrampPushfEnd = len(tLeaDown) + len(tPushf)

// events appends the event code (see the top of this file).
func (t *tramp) events(ev *EvMem) error {
	rip := func(target uint64, end int) ([]byte, error) { // disp32 of an instruction ending at end
		rel, err := rel32(target, t.at+uint64(len(t.code)+end))
		if err != nil {
			return nil, fmt.Errorf("trampoline at %#x: event memory: %w", t.at, err)
		}
		return binary.LittleEndian.AppendUint32(nil, uint32(rel)), nil
	}
	op := func(b ...byte) { t.code = append(t.code, b...); t.mark() }
	d, err := rip(ev.Flag, 8)
	if err != nil {
		return err
	}
	op(append(append([]byte{0x48, 0x83, 0x3d}, d...), 0x00)...) // cmpq $0,flag(%rip)
	t.code = append(t.code, 0x0f, 0x84, 0, 0, 0, 0)             // je skip (below)
	je := len(t.code)
	skip := t.cur // the state at the popfq, when skipped
	t.mark()
	saved := [...]x86asm.Reg{x86asm.RAX, x86asm.RCX, x86asm.RDX, x86asm.RSI}
	for _, r := range saved {
		t.push(r)
	}
	op(0xb9, 1, 0, 0, 0) // mov $1,%ecx
	if d, err = rip(ev.Head, 9); err != nil {
		return err
	}
	t.code = append(append(t.code, 0xf0, 0x48, 0x0f, 0xc1, 0x0d), d...) // lock xadd %rcx,head(%rip)
	t.cur.Claimed = true
	t.mark()
	op(0x0f, 0x31)                                                       // rdtsc
	op(0x48, 0xc1, 0xe2, 0x20)                                           // shl $32,%rdx
	op(0x48, 0x09, 0xd0)                                                 // or %rdx,%rax
	op(0x48, 0x89, 0xca)                                                 // mov %rcx,%rdx
	op(binary.LittleEndian.AppendUint32([]byte{0x81, 0xe2}, ev.Mask)...) // and $mask,%edx
	op(0x48, 0xc1, 0xe2, 0x05)                                           // shl $5,%rdx
	if d, err = rip(ev.Ring, 7); err != nil {
		return err
	}
	op(append([]byte{0x48, 0x8d, 0x35}, d...)...)                                  // lea ring(%rip),%rsi
	op(0x48, 0x01, 0xf2)                                                           // add %rsi,%rdx
	op(0x48, 0x89, 0x42, 0x08)                                                     // mov %rax,8(%rdx)
	op(0xf3, 0x48, 0x0f, 0xae, 0xc0)                                               // rdfsbase %rax
	op(0x48, 0x89, 0x42, 0x10)                                                     // mov %rax,16(%rdx)
	op(binary.LittleEndian.AppendUint32([]byte{0x48, 0xc7, 0x42, 0x18}, ev.ID)...) // movq $id,24(%rdx)
	t.code = append(t.code, 0x48, 0xff, 0xc1)                                      // inc %rcx
	t.cur.Inc = true
	t.mark()
	t.code = append(t.code, 0x48, 0x89, 0x0a) // mov %rcx,(%rdx): published
	t.cur.Claimed, t.cur.Inc, t.cur.Published = false, false, true
	t.mark()
	for i := len(saved) - 1; i >= 0; i-- {
		t.pop(saved[i])
	}
	binary.LittleEndian.PutUint32(t.code[je-4:], uint32(len(t.code)-je))
	// At the popfq either way: published (or skipped), nothing saved.
	t.ps[len(t.ps)-1].Published = t.cur.Published
	_ = skip
	return nil
}
