package probes

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/google/btree"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/lockdep"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/core/srcu"
)

// EngineOptions configures an Engine. The zero value gives the defaults.
type EngineOptions struct {
	// Install and Remove write/restore one breakpoint (the seed's
	// install_breakpoint/remove_breakpoint). nil = verify-opcode default:
	// install.InsertBreakpoint / install.RemoveBreakpoint on mm.AS.
	// They are called with mm.MmapSem held (for reading from
	// Register/Unregister, for writing from MmapHook) and must not take
	// any lock of the hierarchy. Install returns an error wrapping
	// syscall.EEXIST when the breakpoint is already there and
	// syscall.ESRCH when the MM is gone; neither is a failure.
	Install func(mm *rmap.MM, vaddr uint64, u *Uprobe) error
	Remove  func(mm *rmap.MM, vaddr uint64, u *Uprobe) error
	// Flush and Changed are optional (counts.go): Flush moves the hits of
	// u counted outside the engine into its consumers (DispatchCount);
	// Changed says that u's CountOnly answer may have changed. Both are
	// called with u.Inode.IMutex held (from Register and Unregister) or
	// with no lock, and must take no lock of the hierarchy; Changed must
	// not wait for the world.
	Flush   func(u *Uprobe)
	Changed func(u *Uprobe)
	// Batch is optional (batch.go): it is called with v.MM.MmapSem held
	// before a run of Install or Remove calls at vaddrs, all inside v,
	// and the func it returns after the run, before the lock is
	// released; the world may serve the run together (one look at the
	// mapping, one read of the range). It must take no lock of the
	// hierarchy.
	Batch func(v *rmap.VMA, vaddrs []uint64) (end func())
}

func defaultInstall(mm *rmap.MM, vaddr uint64, u *Uprobe) error {
	return install.InsertBreakpoint(mm.AS, vaddr, u.Insn)
}

func defaultRemove(mm *rmap.MM, vaddr uint64, u *Uprobe) error {
	return install.RemoveBreakpoint(mm.AS, vaddr, u.Insn)
}

// Engine is the seed's uprobes core: the uprobe tree and the
// register/unregister and mmap/munmap algorithms. Create it with NewEngine;
// all methods are safe for concurrent use. One Engine works with one
// rmap.Inodes registry (inodes are identified by key in the tree).
type Engine struct {
	install func(mm *rmap.MM, vaddr uint64, u *Uprobe) error
	remove  func(mm *rmap.MM, vaddr uint64, u *Uprobe) error
	// flush and changed are EngineOptions' (counts.go), batch its Batch
	// (batch.go); nil: none.
	flush, changed func(u *Uprobe)
	batch          func(v *rmap.VMA, vaddrs []uint64) func()

	// srcu is uprobes_srcu: register/unregister walks hold a read section
	// while they hold VMA pointers taken from an inode's mapping.
	srcu srcu.SRCU

	// mmapMu is uprobes_mmap_mutex: it serializes MmapHooks (the pending
	// lists) with each other and with deleteUprobe.
	mmapMu lockdep.Mutex

	// treeMu is treelock. tree is protected by treeMu.
	treeMu lockdep.Mutex
	tree   *btree.BTreeG[treeItem]

	// retireMu is a leaf lock beside the hierarchy (never held while
	// taking another lock). retired and reclaiming are protected by
	// retireMu.
	retireMu   sync.Mutex
	retired    []*rmap.VMA
	reclaiming bool

	// test holds test-only knobs (planted bugs and interleaving hooks);
	// zero in production. Set only through export_test.go before use.
	test engineTestHooks
}

// NewEngine returns an engine with no uprobes.
func NewEngine(o EngineOptions) *Engine {
	e := &Engine{install: o.Install, remove: o.Remove, flush: o.Flush, changed: o.Changed, batch: o.Batch, tree: btree.NewG(8, treeLess)}
	if e.install == nil {
		e.install = defaultInstall
	}
	if e.remove == nil {
		e.remove = defaultRemove
	}
	e.srcu.Init(lockdep.SRCU, "uprobes_srcu")
	e.mmapMu.Init(lockdep.UprobesMmapMutex, "uprobes_mmap_mutex")
	e.treeMu.Init(lockdep.Treelock, "treelock")
	return e
}

// walkItem is one entry of a register/unregister temp list: the seed's
// vma->uprobes_list node with its cached mm and vaddr (uprobes_vaddr).
type walkItem struct {
	v     *rmap.VMA
	mm    *rmap.MM
	vaddr uint64
}

// snapshotVMAs returns the temp list of u: every live executable VMA that
// maps u.Inode over u.Offset, taken under i_mmap_mutex.
// Preconditions: u.Inode.IMutex is held; the caller is inside an srcu read
// section that lasts as long as it uses the result.
//
// Resolved ("list_del while another walker iterates"): the temp list is a
// slice private to one walk, not an intrusive list in the VMA, so nothing
// else ever modifies it. munmap does not unlink a VMA from it; it marks the
// VMA dead (rmap.RemoveVMALocked under mmap_sem write) and the walker skips
// dead VMAs after taking mmap_sem (see walkVMAs).
func (e *Engine) snapshotVMAs(u *Uprobe) []walkItem {
	in := u.Inode
	in.LockMapping()
	defer in.UnlockMapping()
	vmas := in.AppendVMAsLocked(nil, u.Offset)
	items := make([]walkItem, 0, len(vmas))
	for _, v := range vmas {
		if !v.Exec { // valid_vma
			continue
		}
		vaddr, _ := v.VaddrOf(u.Offset)
		items = append(items, walkItem{v: v, mm: v.MM, vaddr: vaddr})
	}
	return items
}

// walkVMAs runs fn on every VMA of u's temp list that is still live, with
// its mm's mmap_sem held for reading, until fn returns false.
// Preconditions: u.Inode.IMutex is held.
//
// Resolved (the seed's deadlock): the seed holds srcu across
// down_read(mmap_sem) while munmap_uprobe calls synchronize_srcu with
// mmap_sem held for write — each waits for the other. Here MunmapHook never
// waits for the grace period: it marks the VMA dead under mmap_sem write
// (RemoveVMALocked) and defers the VMA object's reuse until a grace period
// has passed, on a reclaimer goroutine that holds no lock (retireVMA). The
// walker, after taking mmap_sem for reading, writes only if the VMA is
// still live; a dead VMA is skipped. The srcu read section guarantees that
// a VMA pointer in the temp list still denotes the mapping it was taken
// for (the object was not reused for another mapping), so "live" is
// meaningful — no write lands on a range that no longer maps the inode
// (invariant 3).
//
// Resolved: the seed takes srcu_read_lock after building the temp list,
// leaving a window where a VMA could be unmapped, its grace period pass and
// the object be reused before the walk begins. Here the read section begins
// before the snapshot.
func (e *Engine) walkVMAs(u *Uprobe, fn func(it walkItem) bool) {
	idx := e.srcu.ReadLock()
	defer e.srcu.ReadUnlock(idx)
	for _, it := range e.snapshotVMAs(u) {
		e.test.onWalkBeforeMmapSem(it.v)
		if e.test.plantedIMapBeforeMmapSem() {
			// Planted bug: i_mmap_mutex taken before mmap_sem.
			u.Inode.LockMapping()
			it.mm.MmapSem.RLock()
			u.Inode.UnlockMapping()
		} else {
			it.mm.MmapSem.RLock()
		}
		more := true
		if it.v.LiveLocked() {
			more = fn(it)
		}
		it.mm.MmapSem.RUnlock()
		if !more {
			return
		}
	}
}

// Register adds consumer c to the uprobe at (in, off), creating it with
// the original instruction bytes insn (from the file) and step-over plan
// arch if it does not exist, and — for its first consumer — installs the
// breakpoint in every executable mapping of in covering off (the seed's
// register_uprobe). Errors: syscall.EINVAL for an empty insn or nil c;
// syscall.EEXIST if c is already a consumer of that uprobe; an install
// error other than EEXIST/ESRCH (wrapped), after which the registration is
// rolled back completely.
//
// Invariant 1: when Register returns nil, every live executable VMA mapping
// in over off has the breakpoint, including VMAs mapped concurrently:
// either the VMA was in the mapping when the temp list was taken (the walk
// installs), or it was inserted after, hence after the consumer was added,
// and its MmapHook sees the consumer and installs.
func (e *Engine) Register(in *rmap.Inode, off uint64, insn []byte, arch *install.Plan, c *Consumer) error {
	if c == nil || len(insn) == 0 {
		return fmt.Errorf("register %v+%#x: %w", in.Key, off, syscall.EINVAL)
	}
	in.IMutex.Lock() // sync with register/unregister
	defer in.IMutex.Unlock()
	u := e.allocUprobeLocked(in, off, insn, arch)
	if u.hasConsumer(c) {
		return fmt.Errorf("register %v+%#x: consumer %q already registered: %w", in.Key, off, c.Name, syscall.EEXIST)
	}
	first := u.NumConsumers() == 0
	if !first {
		e.Flush(u) // the hits so far are the present consumers'
	}
	u.addConsumerLocked(c)
	c.on.Store(&consumerOn{e, u})
	if !first {
		e.Changed(u)
		return nil
	}
	in.AddUprobesCount(1)

	// Resolved (ret handling): ESRCH (the MM exited) and EEXIST (the
	// breakpoint is there already, e.g. copied by fork, or installed by a
	// concurrent MmapHook) are not failures and count as present; any
	// other error stops the walk and rolls the whole registration back.
	var ret error
	e.walkVMAs(u, func(it walkItem) bool {
		if err := e.installBreakpointLocked(it.v, it.vaddr, u); err != nil {
			ret = fmt.Errorf("register %v+%#x: mm %d: %w", in.Key, off, it.mm.ID, err)
			return false
		}
		return true
	})
	if ret != nil {
		u.delConsumerLocked(c)
		c.on.Store(nil)
		e.unregisterLocked(u) // _unregister_uprobe: remove what was installed
	}
	return ret
}

// installBreakpointLocked is install_breakpoint on one VMA with the seed's
// ret handling: the breakpoint is recorded in v's table first (a thread may
// trap as soon as the byte is written, and the hit path must find it), then
// written; ESRCH (the MM exited) and EEXIST (already there: copied by fork,
// or written by a concurrent MmapHook) are not failures. Any other error is
// returned, with the record undone.
// Preconditions: v.MM.MmapSem held for writing, or for reading with
// u.Inode.IMutex.
func (e *Engine) installBreakpointLocked(v *rmap.VMA, vaddr uint64, u *Uprobe) error {
	added := v.AddBreakpointLocked(u.Offset)
	err := e.install(v.MM, vaddr, u)
	switch {
	case err == nil || errors.Is(err, syscall.EEXIST):
		return nil
	case errors.Is(err, syscall.ESRCH):
		err = nil
	}
	if added {
		v.RemoveBreakpointLocked(u.Offset)
	}
	return err
}

// Unregister removes consumer c from the uprobe at (in, off); with the last
// consumer it removes the breakpoint from every mapping and deletes the
// uprobe (the seed's unregister_uprobe). Errors: syscall.ENOENT if there is
// no such uprobe or c is not its consumer; otherwise the consumer is gone
// and an error reports a breakpoint that could not be restored (wrapped).
//
// Invariant 2: when the last consumer's Unregister returns, no live VMA has
// the breakpoint: the walk restored it in VMAs mapped when the temp list was
// taken; VMAs mapped later saw no consumer in their MmapHook (and removed
// any copy that fork carried over).
func (e *Engine) Unregister(in *rmap.Inode, off uint64, c *Consumer) error {
	in.IMutex.Lock() // sync with register/unregister
	defer in.IMutex.Unlock()
	u := e.findUprobe(in, off)
	if u != nil && u.hasConsumer(c) {
		e.Flush(u) // c's hits up to now are c's
	}
	if u == nil || !u.delConsumerLocked(c) {
		return fmt.Errorf("unregister %v+%#x: %w", in.Key, off, syscall.ENOENT)
	}
	c.on.Store(nil)
	if u.NumConsumers() != 0 {
		e.Changed(u)
		return nil // not the last consumer
	}
	return e.unregisterLocked(u)
}

// unregisterLocked is the seed's _unregister_uprobe after the last consumer
// left: remove the breakpoint everywhere, drop the inode's uprobes_count,
// delete the uprobe.
// Preconditions: u.Inode.IMutex is held; u has no consumers.
func (e *Engine) unregisterLocked(u *Uprobe) error {
	var ret error
	e.walkVMAs(u, func(it walkItem) bool {
		// Unconditional, verify-opcode: restores only where 0xCC is.
		err := e.remove(it.mm, it.vaddr, u)
		if err != nil && !errors.Is(err, syscall.ESRCH) && ret == nil {
			ret = fmt.Errorf("unregister %v+%#x: mm %d: %w", u.Inode.Key, u.Offset, it.mm.ID, err)
		}
		it.v.RemoveBreakpointLocked(u.Offset)
		return true
	})
	u.Inode.AddUprobesCount(-1)
	e.test.onBeforeDelete(u)
	e.deleteUprobe(u)
	return ret
}
