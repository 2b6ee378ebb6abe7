// Package rmap is the engine's model of address spaces and of the reverse
// map from a file to the mappings of it: the Linux structures the seed's
// algorithm walks.
//
// It owns:
//   - Inode: a probed file's identity (dev, ino), its i_mutex, its
//     uprobes_count, and its mapping (mapping->i_mmap: the set of VMAs that
//     map it) guarded by i_mmap_mutex — the seed's vma_prio_tree_foreach is
//     AppendVMAsLocked.
//   - MM: an address space (mm_struct): its mmap_sem, its uprobes_count and
//     its VMAs sorted by address.
//   - VMA: one file (or anonymous) mapping, with the engine's per-VMA state:
//     the dead flag (the seed's "vma objects can vanish after munmap"), the
//     breakpoints the engine has in it (from which uprobes_count is kept),
//     and whether an unmapped VMA object may be reused (after an srcu grace
//     period; see core/probes).
//
// Locks (classes of core/lockdep; the full hierarchy is drawn in core/probes):
// Inode.IMutex (i_mutex) -> MM.MmapSem (mmap_sem) -> Inode's i_mmap_mutex.
// InsertVMALocked and RemoveVMALocked take i_mmap_mutex inside mmap_sem, as
// Linux's vma_link does.
//
// Invariant: a VMA is in its MM's list and in its inode's mapping exactly
// while it is live (between InsertVMALocked and RemoveVMALocked).
// Invariant: mm.UprobesCount() is the sum over mm's live VMAs of their
// breakpoint counts.
//
// It imports only core/lockdep and the standard library: it is the model,
// filled by a world (core/proc, core/sim) and walked by the engine.
package rmap

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/uprobefs/uprobefs/core/lockdep"
)

// AddressSpace is how the engine reads and writes an MM's memory. The
// simulated world and the ptrace world implement it. Errors: wrap
// syscall.ESRCH when the address space is gone (process exited);
// syscall.EFAULT when vaddr is not mapped.
type AddressSpace interface {
	ReadMemory(vaddr uint64, p []byte) error
	WriteMemory(vaddr uint64, p []byte) error
}

// InodeKey identifies a file: st_dev and st_ino.
type InodeKey struct{ Dev, Ino uint64 }

func (k InodeKey) String() string { return fmt.Sprintf("%d:%d", k.Dev, k.Ino) }

// Inode is a probed (or mapped) file. Create Inodes with Inodes.Get only.
type Inode struct {
	// Key is immutable.
	Key InodeKey

	// IMutex is i_mutex: it serializes Register and Unregister on this
	// inode (lockdep class IMutex).
	IMutex lockdep.Mutex

	// uprobesCount is the number of uprobes with consumers on this inode
	// (the seed's inode->uprobes_count). Accessed atomically; modified
	// under IMutex.
	uprobesCount atomic.Int64

	// imapMu is mapping->i_mmap_mutex (lockdep class IMmapMutex).
	imapMu lockdep.Mutex
	// vmas is the mapping (mapping->i_mmap): every live VMA mapping this
	// inode, in no order. vmas is protected by imapMu.
	vmas []*VMA
}

// UprobesCount returns the number of uprobes with at least one consumer on
// in (the seed's inode->uprobes_count). It is cheap: mmap_uprobe's bail-out.
func (in *Inode) UprobesCount() int64 { return in.uprobesCount.Load() }

// AddUprobesCount adds d to the uprobes count and returns the new value.
// Preconditions: in.IMutex is held (the engine calls it).
func (in *Inode) AddUprobesCount(d int64) int64 { return in.uprobesCount.Add(d) }

// LockMapping locks i_mmap_mutex.
func (in *Inode) LockMapping() { in.imapMu.Lock() }

// UnlockMapping unlocks i_mmap_mutex.
func (in *Inode) UnlockMapping() { in.imapMu.Unlock() }

// AppendVMAsLocked appends to dst every live VMA mapping in whose file
// range covers the file offset off, and returns the extended slice (the
// seed's vma_prio_tree_foreach). It does not allocate when dst has room.
// Preconditions: in's mapping is locked (LockMapping).
func (in *Inode) AppendVMAsLocked(dst []*VMA, off uint64) []*VMA {
	for _, v := range in.vmas {
		if _, ok := v.VaddrOf(off); ok {
			dst = append(dst, v)
		}
	}
	return dst
}

// AppendVMAs is AppendVMAsLocked taking i_mmap_mutex around it.
func (in *Inode) AppendVMAs(dst []*VMA, off uint64) []*VMA {
	in.LockMapping()
	defer in.UnlockMapping()
	return in.AppendVMAsLocked(dst, off)
}

// MappingLen returns the number of live VMAs mapping in.
func (in *Inode) MappingLen() int {
	in.LockMapping()
	defer in.UnlockMapping()
	return len(in.vmas)
}

// Inodes is the registry of inodes by key. The zero value is ready; it must
// not be copied after first use. Safe for concurrent use.
type Inodes struct {
	// mu is a leaf lock (outside the hierarchy); m is protected by mu.
	mu sync.Mutex
	m  map[InodeKey]*Inode
}

// Get returns the inode of key k, creating it on first use. One key always
// gives the same *Inode.
func (r *Inodes) Get(k InodeKey) *Inode {
	r.mu.Lock()
	defer r.mu.Unlock()
	if in := r.m[k]; in != nil {
		return in
	}
	if r.m == nil {
		r.m = make(map[InodeKey]*Inode)
	}
	in := &Inode{Key: k}
	in.IMutex.Init(lockdep.IMutex, "i_mutex")
	in.imapMu.Init(lockdep.IMmapMutex, "i_mmap_mutex")
	r.m[k] = in
	return in
}

// Lookup returns the inode of key k, or nil if Get was never called for it.
func (r *Inodes) Lookup(k InodeKey) *Inode {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[k]
}

// MM is an address space (mm_struct).
type MM struct {
	// ID is the pid in the real world, any id in a simulation. Immutable.
	ID int
	// AS reads and writes the address space's memory. Immutable.
	AS AddressSpace

	// MmapSem is mmap_sem (lockdep class MmapSem): held for writing to
	// change the VMA list (mmap, munmap, fork, exit), for reading to
	// write a breakpoint or look up a trap address.
	MmapSem lockdep.RWMutex

	// uprobesCount is the number of breakpoints the engine has in this
	// MM. Accessed atomically.
	uprobesCount atomic.Int64

	// bpMu is a leaf lock guarding the breakpoint sets (VMA.bps) of every
	// VMA of this MM: they are written by the engine under mmap_sem (for
	// writing, or for reading with the inode's i_mutex) and read by the hit
	// path and the status view under mmap_sem for reading, concurrently
	// with a walk's writes.
	bpMu sync.Mutex

	// vmas is sorted by Start, non-overlapping. vmas is protected by MmapSem.
	vmas []*VMA
}

// NewMM returns an empty address space.
func NewMM(id int, as AddressSpace) *MM {
	mm := &MM{ID: id, AS: as}
	mm.MmapSem.Init(lockdep.MmapSem, "mmap_sem")
	return mm
}

// UprobesCount returns the number of breakpoints the engine has in mm (the
// seed's mm->uprobes_count): one per (live VMA, vaddr) where a breakpoint
// was installed or found already present (EEXIST, e.g. copied by fork).
func (mm *MM) UprobesCount() int64 { return mm.uprobesCount.Load() }

// InsertVMALocked links v into mm (sorted by Start) and into v.Inode's
// mapping (taking i_mmap_mutex inside), and marks it live. v.MM is set to mm
// if nil. It panics if v overlaps a VMA of mm, belongs to another MM, or is
// live already (a world bug).
// Preconditions: mm.MmapSem is held for writing.
func (mm *MM) InsertVMALocked(v *VMA) {
	if v.MM == nil {
		v.MM = mm
	}
	if v.MM != mm || v.live || v.Start >= v.End {
		panic(fmt.Sprintf("rmap: bad InsertVMALocked of %v into mm %d", v, mm.ID))
	}
	i := sort.Search(len(mm.vmas), func(i int) bool { return mm.vmas[i].Start >= v.Start })
	if (i < len(mm.vmas) && mm.vmas[i].Start < v.End) || (i > 0 && mm.vmas[i-1].End > v.Start) {
		panic(fmt.Sprintf("rmap: VMA %v overlaps an existing VMA of mm %d", v, mm.ID))
	}
	mm.vmas = append(mm.vmas, nil)
	copy(mm.vmas[i+1:], mm.vmas[i:])
	mm.vmas[i] = v
	v.live = true
	v.reusable.Store(false)
	mm.bpMu.Lock()
	clear(v.bps)
	mm.bpMu.Unlock()
	if v.Inode != nil {
		in := v.Inode
		in.LockMapping()
		v.mapIdx = len(in.vmas)
		in.vmas = append(in.vmas, v)
		in.UnlockMapping()
	}
}

// RemoveVMALocked unlinks v from mm and from its inode's mapping (taking
// i_mmap_mutex inside) and marks it dead. The engine's MunmapHook must be
// called next, still under mmap_sem.
// Preconditions: mm.MmapSem is held for writing; v is a live VMA of mm.
func (mm *MM) RemoveVMALocked(v *VMA) {
	i := sort.Search(len(mm.vmas), func(i int) bool { return mm.vmas[i].Start >= v.Start })
	if i == len(mm.vmas) || mm.vmas[i] != v {
		panic(fmt.Sprintf("rmap: RemoveVMALocked of %v: not a VMA of mm %d", v, mm.ID))
	}
	mm.vmas = append(mm.vmas[:i], mm.vmas[i+1:]...)
	v.live = false
	if v.Inode != nil {
		in := v.Inode
		in.LockMapping()
		last := len(in.vmas) - 1
		in.vmas[v.mapIdx] = in.vmas[last]
		in.vmas[v.mapIdx].mapIdx = v.mapIdx
		in.vmas[last] = nil
		in.vmas = in.vmas[:last]
		v.mapIdx = -1
		in.UnlockMapping()
	}
}

// FindVMALocked returns the VMA of mm containing vaddr, or nil. It does not
// allocate.
// Preconditions: mm.MmapSem is held (for reading or writing).
func (mm *MM) FindVMALocked(vaddr uint64) *VMA {
	lo, hi := 0, len(mm.vmas)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		v := mm.vmas[m]
		switch {
		case vaddr < v.Start:
			hi = m
		case vaddr >= v.End:
			lo = m + 1
		default:
			return v
		}
	}
	return nil
}

// VMAsLocked returns a copy of mm's VMAs sorted by Start.
// Preconditions: mm.MmapSem is held (for reading or writing).
func (mm *MM) VMAsLocked() []*VMA {
	return append([]*VMA(nil), mm.vmas...)
}

// VMA is one mapping of an MM. Its exported fields are set by the world
// before InsertVMALocked and not changed while it is live; a world may reuse
// a VMA object for a new mapping only once Reusable reports true.
type VMA struct {
	MM         *MM
	Start, End uint64 // [Start, End), page aligned
	Pgoff      uint64 // file offset (bytes) mapped at Start
	Inode      *Inode // nil for anonymous mappings
	Exec       bool

	// mapIdx is v's index in Inode.vmas. mapIdx is protected by the
	// inode's i_mmap_mutex.
	mapIdx int
	// live is true between InsertVMALocked and RemoveVMALocked. live is
	// protected by MM.MmapSem (written under the write lock).
	live bool
	// reusable reports that v is dead and no srcu reader can still hold
	// it. Accessed atomically.
	reusable atomic.Bool
	// bps is the set of file offsets where the engine has a breakpoint in
	// v: the one table of truth of which breakpoints are in place (the hit
	// path and the status view read it). An offset enters it before the
	// breakpoint is written and leaves it after the original byte is
	// restored. bps is protected by MM.bpMu; its writers also hold
	// MM.MmapSem for writing, or for reading together with Inode.IMutex
	// (which exclude each other).
	bps map[uint64]struct{}
}

func (v *VMA) String() string {
	ino := "anon"
	if v.Inode != nil {
		ino = v.Inode.Key.String()
	}
	return fmt.Sprintf("[%#x-%#x pgoff %#x %s exec=%v]", v.Start, v.End, v.Pgoff, ino, v.Exec)
}

// VaddrOf returns the address where v maps the file offset off, and whether
// v covers off.
func (v *VMA) VaddrOf(off uint64) (uint64, bool) {
	if off < v.Pgoff || off-v.Pgoff >= v.End-v.Start {
		return 0, false
	}
	return v.Start + (off - v.Pgoff), true
}

// OffsetOf returns the file offset v maps at vaddr (vaddr must be in v).
func (v *VMA) OffsetOf(vaddr uint64) uint64 { return v.Pgoff + (vaddr - v.Start) }

// LiveLocked reports whether v is still mapped (not removed).
// Preconditions: v.MM.MmapSem is held.
func (v *VMA) LiveLocked() bool { return v.live }

// Reusable reports whether v was unmapped and its srcu grace period has
// passed, so that the object may be reused for a new mapping.
func (v *VMA) Reusable() bool { return v.reusable.Load() }

// MarkReusable records that v's grace period has passed (the engine calls it).
func (v *VMA) MarkReusable() { v.reusable.Store(true) }

// AddBreakpointLocked records that the engine has (or is about to write) a
// breakpoint at file offset off in v, counting it in v.MM's uprobes_count,
// and reports whether it was new.
// Preconditions: v.MM.MmapSem held for writing, or for reading with
// v.Inode.IMutex.
func (v *VMA) AddBreakpointLocked(off uint64) bool {
	mm := v.MM
	mm.bpMu.Lock()
	defer mm.bpMu.Unlock()
	if _, ok := v.bps[off]; ok {
		return false
	}
	if v.bps == nil {
		v.bps = make(map[uint64]struct{})
	}
	v.bps[off] = struct{}{}
	mm.uprobesCount.Add(1)
	return true
}

// RemoveBreakpointLocked forgets the breakpoint at off and reports whether
// there was one. Preconditions: as AddBreakpointLocked.
func (v *VMA) RemoveBreakpointLocked(off uint64) bool {
	mm := v.MM
	mm.bpMu.Lock()
	defer mm.bpMu.Unlock()
	if _, ok := v.bps[off]; !ok {
		return false
	}
	delete(v.bps, off)
	mm.uprobesCount.Add(-1)
	return true
}

// HasBreakpointLocked reports whether the engine has a breakpoint at off.
// Preconditions: v.MM.MmapSem held (for reading suffices).
func (v *VMA) HasBreakpointLocked(off uint64) bool {
	v.MM.bpMu.Lock()
	_, ok := v.bps[off]
	v.MM.bpMu.Unlock()
	return ok
}

// BreakpointsLocked returns the number of breakpoints the engine has in v.
// Preconditions: v.MM.MmapSem held.
func (v *VMA) BreakpointsLocked() int {
	v.MM.bpMu.Lock()
	defer v.MM.bpMu.Unlock()
	return len(v.bps)
}

// ClearBreakpointsLocked forgets every breakpoint of v (munmap), removes
// them from v.MM's uprobes_count and returns how many there were.
// Preconditions: v.MM.MmapSem held for writing.
func (v *VMA) ClearBreakpointsLocked() int {
	mm := v.MM
	mm.bpMu.Lock()
	defer mm.bpMu.Unlock()
	n := len(v.bps)
	if n != 0 {
		clear(v.bps)
		mm.uprobesCount.Add(int64(-n))
	}
	return n
}

// BreakpointOffsetsLocked returns the file offsets where the engine has a
// breakpoint in v, in no order.
// Preconditions: v.MM.MmapSem held.
func (v *VMA) BreakpointOffsetsLocked() []uint64 {
	v.MM.bpMu.Lock()
	defer v.MM.bpMu.Unlock()
	offs := make([]uint64, 0, len(v.bps))
	for off := range v.bps {
		offs = append(offs, off)
	}
	return offs
}
