package sim

import (
	"errors"
	"fmt"

	"github.com/uprobefs/uprobefs/core/rmap"
)

// Expect is the registration state a test believes is in force: for each
// inode, the number of consumers per registered file offset.
type Expect map[rmap.InodeKey]map[uint64]int

// maxCheckErrs bounds the errors Check reports.
const maxCheckErrs = 20

// Check recomputes from scratch what every process's memory and every
// count must be under exp and compares (DESIGN.md §3 invariants 1, 2, 3,
// 5 at a quiescent point):
//   - every byte of every live mapping equals its file's byte, except at a
//     registered offset in an executable mapping, where it is 0xCC (so a
//     stale write to a remapped range or a missing/leftover breakpoint is
//     caught);
//   - every MM's UprobesCount equals the number of (executable VMA,
//     registered offset covered) pairs, per VMA as well;
//   - every inode's UprobesCount equals its number of registered offsets,
//     and the engine's uprobes on it are exactly those, with the expected
//     consumer counts;
//   - every inode's mapping holds exactly the live VMAs mapping it.
//
// It must be called when no operation is in flight. It returns nil or the
// first few discrepancies joined.
func (w *World) Check(exp Expect) error {
	var errs []error
	add := func(format string, a ...any) {
		if len(errs) < maxCheckErrs {
			errs = append(errs, fmt.Errorf(format, a...))
		}
	}
	mapped := map[*rmap.Inode]int{}
	for _, p := range w.Procs() {
		mm := p.MM
		mm.MmapSem.RLock()
		vs := mm.VMAsLocked()
		var want int64
		p.as.mu.Lock()
		if len(p.as.regions) != len(vs) {
			add("mm %d: %d regions for %d VMAs", mm.ID, len(p.as.regions), len(vs))
		}
		for i, v := range vs {
			if i >= len(p.as.regions) || p.as.regions[i].v != v {
				add("mm %d: VMA %v has no region", mm.ID, v)
				continue
			}
			r := p.as.regions[i]
			if v.Inode != nil {
				mapped[v.Inode]++
			}
			var regs map[uint64]int
			if v.Inode != nil {
				regs = exp[v.Inode.Key]
			}
			vwant := 0
			for j, got := range r.mem {
				off := v.Pgoff + uint64(j)
				wantb := r.file.byteAt(off)
				if v.Exec && regs[off] > 0 {
					wantb = 0xCC
					vwant++
				}
				if got != wantb {
					add("mm %d: VMA %v: byte at %#x (file offset %#x) is %#02x, want %#02x", mm.ID, v, v.Start+uint64(j), off, got, wantb)
				}
			}
			if n := v.BreakpointsLocked(); n != vwant {
				add("mm %d: VMA %v: %d breakpoints counted, want %d", mm.ID, v, n, vwant)
			}
			want += int64(vwant)
		}
		p.as.mu.Unlock()
		if got := mm.UprobesCount(); got != want {
			add("mm %d: uprobes_count %d, want %d", mm.ID, got, want)
		}
		mm.MmapSem.RUnlock()
	}
	for _, f := range w.Files() {
		in := f.Inode
		regs := exp[in.Key]
		nreg := 0
		for _, n := range regs {
			if n > 0 {
				nreg++
			}
		}
		if got := in.UprobesCount(); got != int64(nreg) {
			add("inode %v: uprobes_count %d, want %d", in.Key, got, nreg)
		}
		seen := 0
		for _, u := range w.Eng.Uprobes(in) {
			n := u.NumConsumers()
			if regs[u.Offset] != n || n == 0 {
				add("inode %v: uprobe %#x has %d consumers, want %d", in.Key, u.Offset, n, regs[u.Offset])
			}
			seen++
		}
		if seen != nreg {
			add("inode %v: %d uprobes in the tree, want %d", in.Key, seen, nreg)
		}
		if got := in.MappingLen(); got != mapped[in] {
			add("inode %v: mapping has %d VMAs, want %d", in.Key, got, mapped[in])
		}
	}
	return errors.Join(errs...)
}
