package objfile

import (
	"cmp"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/arch/x86/x86asm"

	"github.com/uprobefs/uprobefs/core/install"
)

// The branch scan: every executable segment decoded once per File, in a
// linear sweep that resynchronises at every known instruction start
// (function symbols, unwind entries, PLT regions), so a function is always
// decoded from its first instruction. It records the targets of direct
// branches, the indirect jmps and the offsets that do not decode, all as
// sorted file offsets, for JumpAt's binary searches.

// maxScanSegment bounds the bytes of one segment the scan reads.
const maxScanSegment = 1 << 30

type branchIndex struct {
	// targets is sorted; srcs[i] is the offset of a branch to targets[i].
	targets, srcs []uint64
	indirect      []uint64 // indirect jmps, sorted
	bad           []uint64 // offsets that did not decode, sorted
	insns         int      // instructions decoded
	took          time.Duration
}

// scanState is the lazily built index of a File.
type scanState struct {
	once sync.Once
	idx  *branchIndex
}

// jumpIndex returns the file's branch index, scanning on first use.
func (f *File) jumpIndex() *branchIndex {
	f.scan.once.Do(func() { f.scan.idx = f.scanBranches(false) })
	return f.scan.idx
}

// ScanStats reports the size and cost of the file's branch scan (run now
// if it has not run): instructions decoded, direct branches, indirect
// jmps, and how long the scan took.
func (f *File) ScanStats() (insns, branches, indirect int, took time.Duration) {
	x := f.jumpIndex()
	return x.insns, len(x.targets), len(x.indirect), x.took
}

// scanBranches scans f; slow: with x86asm alone (TestFastLen compares).
// Not race-instrumented (see fastInsn): it works on its own buffers and
// publishes the index through jumpIndex's sync.Once.
//
//go:norace
func (f *File) scanBranches(slow bool) *branchIndex {
	t0 := time.Now()
	x := &branchIndex{}
	var starts []uint64
	for _, s := range f.syms {
		starts = append(starts, s.off)
	}
	for _, r := range f.regions {
		starts = append(starts, r.start)
	}
	slices.Sort(starts)
	type pair struct{ t, s uint64 }
	br := make([]pair, 0, f.size/32)
	for _, seg := range f.segs {
		lo, hi := seg.off, min(seg.off+seg.filesz, f.size)
		if hi <= lo || hi-lo > maxScanSegment {
			continue
		}
		code := make([]byte, hi-lo)
		n, err := f.readAt(code, lo)
		if err != nil {
			continue
		}
		code = code[:n]
		hi = lo + uint64(n)
		k := sort.Search(len(starts), func(i int) bool { return starts[i] >= lo })
		for pos := lo; pos < hi; {
			for k < len(starts) && starts[k] <= pos {
				k++
			}
			// starts[k] is the next known start after pos.
			l, kind, rel, ok := scanInsn(code[pos-lo:], slow)
			if !ok {
				x.bad = append(x.bad, pos)
				pos++
				continue
			}
			if k < len(starts) && pos+uint64(l) > starts[k] && starts[k] < hi {
				pos = starts[k] // straddles a known start: resynchronise
				continue
			}
			x.insns++
			switch kind {
			case bRel:
				v := pos - seg.off + seg.vaddr + uint64(l) + uint64(rel)
				if t, ok := f.vaddrToOff(v); ok {
					br = append(br, pair{t, pos})
				}
			case bIndirect:
				x.indirect = append(x.indirect, pos)
			}
			pos += uint64(l)
		}
	}
	slices.SortFunc(br, func(a, b pair) int { return cmp.Compare(a.t, b.t) })
	x.targets, x.srcs = make([]uint64, len(br)), make([]uint64, len(br))
	for i, p := range br {
		x.targets[i], x.srcs[i] = p.t, p.s
	}
	x.took = time.Since(t0)
	return x
}

// scanInsn returns the length of the instruction at the start of b, and
// whether it is a direct branch (jmp, jcc, call, loop, jrcxz, xbegin: kind
// bRel, rel its displacement) or an indirect jmp (bIndirect); ok is false
// if it does not decode. fastInsn first unless slow, else x86asm.
//
//go:norace
func scanInsn(b []byte, slow bool) (n, kind int, rel int64, ok bool) {
	if len(b) == 0 {
		return 0, 0, 0, false
	}
	if !slow {
		if n, kind, rel, ok := fastInsn(b); ok {
			return n, kind, rel, true
		}
	}
	switch b[0] {
	case 0xc4, 0xc5, 0x62: // VEX and EVEX: never a branch
		l, err := install.InsnLen(b[:min(len(b), install.MaxInsnLen)])
		return l, bNone, 0, err == nil
	case 0xf3:
		if len(b) >= 4 && b[1] == 0x0f && b[2] == 0x1e && (b[3] == 0xfa || b[3] == 0xfb) {
			return 4, bNone, 0, true // endbr64, endbr32
		}
	}
	in, err := x86asm.Decode(b[:min(len(b), install.MaxInsnLen)], 64)
	if err != nil || in.Len == 0 {
		return 0, 0, 0, false
	}
	switch in.Op {
	case x86asm.JMP, x86asm.LJMP, x86asm.CALL, x86asm.JO, x86asm.JNO, x86asm.JB, x86asm.JAE, x86asm.JE,
		x86asm.JNE, x86asm.JBE, x86asm.JA, x86asm.JS, x86asm.JNS, x86asm.JP, x86asm.JNP, x86asm.JL,
		x86asm.JGE, x86asm.JLE, x86asm.JG, x86asm.JRCXZ, x86asm.JECXZ, x86asm.JCXZ, x86asm.LOOP,
		x86asm.LOOPE, x86asm.LOOPNE, x86asm.XBEGIN:
		if r, ok := in.Args[0].(x86asm.Rel); ok {
			return in.Len, bRel, int64(r), true
		}
		if in.Op == x86asm.JMP || in.Op == x86asm.LJMP {
			return in.Len, bIndirect, 0, true
		}
	}
	return in.Len, bNone, 0, true
}

// indirectIn returns an indirect jmp in [lo, hi).
func (x *branchIndex) indirectIn(lo, hi uint64) (uint64, bool) { return firstIn(x.indirect, lo, hi) }

// badIn returns an offset in [lo, hi) that did not decode.
func (x *branchIndex) badIn(lo, hi uint64) (uint64, bool) { return firstIn(x.bad, lo, hi) }

// branchInto returns a branch (source, target) whose target is in [lo, hi).
func (x *branchIndex) branchInto(lo, hi uint64) (src, dst uint64, ok bool) {
	i := sort.Search(len(x.targets), func(i int) bool { return x.targets[i] >= lo })
	if i < len(x.targets) && x.targets[i] < hi {
		return x.srcs[i], x.targets[i], true
	}
	return 0, 0, false
}

func firstIn(s []uint64, lo, hi uint64) (uint64, bool) {
	i := sort.Search(len(s), func(i int) bool { return s[i] >= lo })
	if i < len(s) && s[i] < hi {
		return s[i], true
	}
	return 0, false
}
