// Package sim is a simulated world under the engine: processes (MMs) whose
// memory is byte-level copies of the pages of the files they map, and the
// operations mmap, munmap, fork and exit, which call the engine's hooks
// holding the locks the seed says (mmap_sem held for writing). It is the
// ground for deterministic and stress tests of core/probes, and Check
// recomputes the expected state of every byte and count from scratch.
//
// Locks: each operation takes the MM's mmap_sem for writing (fork: the
// parent's, then the child's with lockdep nesting), and the engine takes
// the rest of the hierarchy inside. World.mu and each address space's mu
// are leaf locks beside the hierarchy, never held while taking another lock.
//
// VMA objects are recycled (like Linux's vm_area_cachep): an unmapped VMA
// goes to a free list and is handed out again for a new mapping once
// rmap.VMA.Reusable reports true, so that a stale VMA pointer held across
// munmap is a real hazard here, as a freed vm_area_struct is in the kernel.
//
// Watcher (watch.go) makes a World the world of core/manager, for the
// facade's and the filesystem's unit tests. It imports core/probes,
// core/rmap and the standard library; it is for tests only (no production
// package imports it).
package sim

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"syscall"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// PageSize is the simulated page size.
const PageSize = 4096

// File is a file that processes map. Data is immutable.
type File struct {
	Inode *rmap.Inode
	Data  []byte
}

// byteAt returns the file's byte at off (0 past EOF, as a mapping reads).
func (f *File) byteAt(off uint64) byte {
	if off < uint64(len(f.Data)) {
		return f.Data[off]
	}
	return 0
}

// World is a set of simulated processes over one engine.
type World struct {
	Eng    *probes.Engine // immutable
	Inodes *rmap.Inodes   // immutable

	// mu is a leaf lock. procs, files, nextID and free are protected by mu.
	mu     sync.Mutex
	procs  map[int]*Proc
	files  map[rmap.InodeKey]*File
	nextID int
	free   []*rmap.VMA // recycled VMA objects, most recent last
}

// maxFree bounds the free list.
const maxFree = 64

// NewWorld returns an empty world over eng; inodes are taken from inodes.
func NewWorld(eng *probes.Engine, inodes *rmap.Inodes) *World {
	return &World{Eng: eng, Inodes: inodes, procs: map[int]*Proc{}, files: map[rmap.InodeKey]*File{}, nextID: 1}
}

// NewFile adds a file with key k and contents data (copied).
func (w *World) NewFile(k rmap.InodeKey, data []byte) *File {
	f := &File{Inode: w.Inodes.Get(k), Data: append([]byte(nil), data...)}
	w.mu.Lock()
	w.files[k] = f
	w.mu.Unlock()
	return f
}

// Files returns the files of the world.
func (w *World) Files() []*File {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.SortedFunc(maps.Values(w.files), func(a, b *File) int {
		return cmp.Or(cmp.Compare(a.Inode.Key.Dev, b.Inode.Key.Dev), cmp.Compare(a.Inode.Key.Ino, b.Inode.Key.Ino))
	})
}

// Proc is a simulated process: an MM and its memory.
type Proc struct {
	W  *World   // immutable
	MM *rmap.MM // immutable
	as *space   // immutable (MM.AS)

	// exited and detached are protected by MM.MmapSem. A detached process
	// is exited for the world, but its memory stays readable.
	exited, detached bool
}

// Spawn creates a process with an empty address space.
func (w *World) Spawn() *Proc {
	p := w.newProc()
	w.publish(p)
	return p
}

// newProc returns a process with a fresh id, not yet in w.procs.
func (w *World) newProc() *Proc {
	w.mu.Lock()
	id := w.nextID
	w.nextID++
	w.mu.Unlock()
	as := &space{}
	return &Proc{W: w, as: as, MM: rmap.NewMM(id, as)}
}

func (w *World) publish(p *Proc) {
	w.mu.Lock()
	w.procs[p.MM.ID] = p
	w.mu.Unlock()
}

// Procs returns the live processes, by id.
func (w *World) Procs() []*Proc {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.SortedFunc(maps.Values(w.procs), func(a, b *Proc) int { return cmp.Compare(a.MM.ID, b.MM.ID) })
}

// allocVMA returns a VMA object: the most recently freed reusable one, or
// a new one.
func (w *World) allocVMA() *rmap.VMA {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := len(w.free) - 1; i >= 0; i-- {
		if v := w.free[i]; v.Reusable() {
			w.free = append(w.free[:i], w.free[i+1:]...)
			return v
		}
	}
	return &rmap.VMA{}
}

func (w *World) freeVMA(vs ...*rmap.VMA) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.free = append(w.free, vs...)
	if n := len(w.free); n > maxFree {
		w.free = append(w.free[:0], w.free[n-maxFree:]...)
	}
}

// Mmap maps length bytes (rounded up to pages) of f from file offset pgoff
// (page aligned) at start (page aligned) in p, executable if exec, and
// calls the engine's MmapHook under mmap_sem held for writing. Errors:
// ESRCH if p exited, EINVAL for a bad range or an overlap; otherwise the
// VMA is mapped and MmapHook's error is returned with it.
func (p *Proc) Mmap(f *File, start, pgoff, length uint64, exec bool) (*rmap.VMA, error) {
	length = (length + PageSize - 1) &^ (PageSize - 1)
	if start%PageSize != 0 || pgoff%PageSize != 0 || length == 0 || start+length < start {
		return nil, syscall.EINVAL
	}
	mm := p.MM
	mm.MmapSem.Lock()
	defer mm.MmapSem.Unlock()
	if p.exited {
		return nil, syscall.ESRCH
	}
	for _, o := range mm.VMAsLocked() {
		if o.Start < start+length && start < o.End {
			return nil, syscall.EINVAL
		}
	}
	mem := make([]byte, length)
	for i := range mem {
		mem[i] = f.byteAt(pgoff + uint64(i))
	}
	return p.mapLocked(f, start, pgoff, mem, exec)
}

// mapLocked creates the VMA and its memory, inserts it and runs MmapHook.
// Preconditions: p.MM.MmapSem held for writing.
func (p *Proc) mapLocked(f *File, start, pgoff uint64, mem []byte, exec bool) (*rmap.VMA, error) {
	v := p.W.allocVMA()
	*v = rmap.VMA{MM: p.MM, Start: start, End: start + uint64(len(mem)), Pgoff: pgoff, Inode: f.Inode, Exec: exec}
	p.as.add(&region{start: v.Start, end: v.End, mem: mem, file: f, v: v})
	p.MM.InsertVMALocked(v)
	err := p.W.Eng.MmapHook(v)
	return v, err
}

// Munmap unmaps the VMA of p that starts at start, calling MunmapHook
// under mmap_sem held for writing. EINVAL if no VMA of p starts there;
// ESRCH if p exited. (It takes an address, not a *rmap.VMA: a VMA pointer
// kept across an unlock may denote a recycled object.)
func (p *Proc) Munmap(start uint64) error {
	mm := p.MM
	mm.MmapSem.Lock()
	if p.exited {
		mm.MmapSem.Unlock()
		return syscall.ESRCH
	}
	v := mm.FindVMALocked(start)
	if v == nil || v.Start != start {
		mm.MmapSem.Unlock()
		return syscall.EINVAL
	}
	mm.RemoveVMALocked(v)
	p.W.Eng.MunmapHook(v)
	p.as.remove(v.Start)
	mm.MmapSem.Unlock()
	p.W.freeVMA(v)
	return nil
}

// Fork creates a child with a copy of p's mappings and memory (including
// breakpoints). It holds p's mmap_sem for writing from the copy until the
// child's MmapHooks are done (as dup_mmap does), and the child's, nested.
// ESRCH if p exited.
func (p *Proc) Fork() (*Proc, error) {
	pmm := p.MM
	pmm.MmapSem.Lock()
	defer pmm.MmapSem.Unlock()
	if p.exited {
		return nil, syscall.ESRCH
	}
	w := p.W
	c := w.newProc()
	// Lock the child before publishing it (nobody else can hold it, so
	// this does not block), nested inside the parent's mmap_sem.
	c.MM.MmapSem.LockNested(1)
	defer c.MM.MmapSem.Unlock()
	w.publish(c)
	var errs []error
	for _, v := range pmm.VMAsLocked() {
		r := p.as.region(v.Start)
		if _, err := c.mapLocked(r.file, v.Start, v.Pgoff, r.snapshot(), v.Exec); err != nil {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}

// Exit unmaps everything (MunmapHook for each VMA) and makes the address
// space gone (ESRCH). Exiting twice is a no-op.
func (p *Proc) Exit() { p.leave(false) }

// Detach is what a real world does when it stops tracing a process: the
// engine forgets the process's VMAs (MunmapHook, under mmap_sem held for
// writing; nothing is written), and the process leaves the world, but its
// memory stays as it is and readable through ReadMemory (and ByteAt), as
// a detached process runs on. Detaching twice, or after Exit, is a no-op.
func (p *Proc) Detach() { p.leave(true) }

// leave removes every VMA of p from the engine and p from the world,
// keeping its memory if detach.
func (p *Proc) leave(detach bool) {
	mm := p.MM
	mm.MmapSem.Lock()
	if p.exited {
		mm.MmapSem.Unlock()
		return
	}
	vs := mm.VMAsLocked()
	for _, v := range vs {
		mm.RemoveVMALocked(v)
		p.W.Eng.MunmapHook(v)
		if !detach {
			p.as.remove(v.Start)
		}
	}
	if !detach {
		p.as.exit()
		p.W.freeVMA(vs...) // safe: the engine's MunmapHook gates reuse
	}
	p.exited, p.detached = true, detach
	mm.MmapSem.Unlock()
	p.W.mu.Lock()
	delete(p.W.procs, mm.ID)
	p.W.mu.Unlock()
}

// Mapping describes one VMA of a process at one moment.
type Mapping struct {
	Start, End, Pgoff uint64
	Inode             *rmap.Inode
	Exec              bool
}

// Mappings returns p's mappings, sorted by address (values: the VMA
// objects may be recycled once unmapped).
func (p *Proc) Mappings() []Mapping {
	p.MM.MmapSem.RLock()
	defer p.MM.MmapSem.RUnlock()
	vs := p.MM.VMAsLocked()
	ms := make([]Mapping, len(vs))
	for i, v := range vs {
		ms[i] = Mapping{Start: v.Start, End: v.End, Pgoff: v.Pgoff, Inode: v.Inode, Exec: v.Exec}
	}
	return ms
}

// ReadMemory reads p's memory (taking mmap_sem for reading), also after
// Detach.
func (p *Proc) ReadMemory(vaddr uint64, b []byte) error {
	p.MM.MmapSem.RLock()
	defer p.MM.MmapSem.RUnlock()
	return p.as.ReadMemory(vaddr, b)
}

// region is the memory of one mapping.
type region struct {
	start, end uint64
	mem        []byte // protected by space.mu
	file       *File
	v          *rmap.VMA
}

func (r *region) snapshot() []byte { return append([]byte(nil), r.mem...) }

// space is a simulated address space: rmap.AddressSpace.
type space struct {
	// mu is a leaf lock; gone, regions and every region's mem are
	// protected by mu.
	mu      sync.Mutex
	gone    bool
	regions []*region // sorted by start
	// failWrites makes every write fail (set before the space is used).
	failWrites bool
}

var _ rmap.AddressSpace = (*space)(nil)

func (s *space) add(r *region) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := sort.Search(len(s.regions), func(i int) bool { return s.regions[i].start >= r.start })
	s.regions = slices.Insert(s.regions, i, r)
}

func (s *space) remove(start uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := slices.IndexFunc(s.regions, func(r *region) bool { return r.start == start }); i >= 0 {
		s.regions = slices.Delete(s.regions, i, i+1)
	}
}

// region returns the region starting at start. Under s.mu the caller
// copies; mem itself changes only under s.mu.
func (s *space) region(start uint64) *region {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.regions {
		if r.start == start {
			cp := *r
			cp.mem = r.snapshot()
			return &cp
		}
	}
	return nil
}

func (s *space) exit() {
	s.mu.Lock()
	s.gone = true
	s.regions = nil
	s.mu.Unlock()
}

// findLocked returns the region holding [vaddr, vaddr+n). Preconditions: s.mu held.
func (s *space) findLocked(vaddr uint64, n int) (*region, error) {
	if s.gone {
		return nil, fmt.Errorf("sim: address space gone: %w", syscall.ESRCH)
	}
	for _, r := range s.regions {
		if vaddr >= r.start && vaddr+uint64(n) <= r.end && vaddr+uint64(n) >= vaddr {
			return r, nil
		}
	}
	return nil, fmt.Errorf("sim: %#x+%d not mapped: %w", vaddr, n, syscall.EFAULT)
}

// ReadMemory implements rmap.AddressSpace.
func (s *space) ReadMemory(vaddr uint64, p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.findLocked(vaddr, len(p))
	if err != nil {
		return err
	}
	copy(p, r.mem[vaddr-r.start:])
	return nil
}

// WriteMemory implements rmap.AddressSpace.
func (s *space) WriteMemory(vaddr uint64, p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failWrites {
		return errWriteRefused
	}
	r, err := s.findLocked(vaddr, len(p))
	if err != nil {
		return err
	}
	copy(r.mem[vaddr-r.start:], p)
	return nil
}
