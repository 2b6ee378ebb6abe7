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
}

func defaultInstall(mm *rmap.MM, vaddr uint64, u *Uprobe) error {
	return install.InsertBreakpoint(mm.AS, vaddr, u.Insn[0])
}

func defaultRemove(mm *rmap.MM, vaddr uint64, u *Uprobe) error {
	return install.RemoveBreakpoint(mm.AS, vaddr, u.Insn[0])
}

// treeItem is an entry of the uprobe tree, ordered by (dev, ino, offset).
// It is a value type so that a lookup key costs no allocation.
type treeItem struct {
	dev, ino, off uint64
	u             *Uprobe
}

func treeLess(a, b treeItem) bool {
	if a.dev != b.dev {
		return a.dev < b.dev
	}
	if a.ino != b.ino {
		return a.ino < b.ino
	}
	return a.off < b.off
}

func treeKey(in *rmap.Inode, off uint64) treeItem {
	return treeItem{dev: in.Key.Dev, ino: in.Key.Ino, off: off}
}

// Engine is the seed's uprobes core: the uprobe tree and the
// register/unregister and mmap/munmap algorithms. Create it with NewEngine;
// all methods are safe for concurrent use. One Engine works with one
// rmap.Inodes registry (inodes are identified by key in the tree).
type Engine struct {
	install func(mm *rmap.MM, vaddr uint64, u *Uprobe) error
	remove  func(mm *rmap.MM, vaddr uint64, u *Uprobe) error

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
	e := &Engine{install: o.Install, remove: o.Remove, tree: btree.NewG(8, treeLess)}
	if e.install == nil {
		e.install = defaultInstall
	}
	if e.remove == nil {
		e.remove = defaultRemove
	}
	e.mmapMu.Init(lockdep.UprobesMmapMutex, "uprobes_mmap_mutex")
	e.treeMu.Init(lockdep.Treelock, "treelock")
	return e
}

// findUprobe returns the uprobe at (in, off) or nil (the seed's find_uprobe).
func (e *Engine) findUprobe(in *rmap.Inode, off uint64) *Uprobe {
	e.treeMu.Lock()
	it, ok := e.tree.Get(treeKey(in, off))
	e.treeMu.Unlock()
	if !ok {
		return nil
	}
	return it.u
}

// allocUprobeLocked finds the uprobe at (in, off) or inserts a new one
// (the seed's alloc_uprobe).
// Preconditions: in.IMutex is held.
//
// Resolved: the seed calls alloc_uprobe before taking i_mutex. Then a
// register could find a uprobe that a concurrent unregister (holding
// i_mutex) is about to delete, and add its consumer to a uprobe that is no
// longer in the tree. Here the find-or-insert is done under i_mutex (order
// i_mutex -> treelock), so a uprobe found is never deleted under us.
func (e *Engine) allocUprobeLocked(in *rmap.Inode, off uint64, insn []byte, arch any) *Uprobe {
	k := treeKey(in, off)
	e.treeMu.Lock()
	defer e.treeMu.Unlock()
	if it, ok := e.tree.Get(k); ok {
		return it.u
	}
	u := &Uprobe{Inode: in, Offset: off, Insn: append([]byte(nil), insn...), Arch: arch}
	k.u = u
	e.tree.ReplaceOrInsert(k)
	return u
}

// deleteUprobe removes u from the tree (the seed's delete_uprobe under
// uprobes_mmap_mutex): u leaves the tree only with its last consumer.
// Preconditions: u.Inode.IMutex is held; u has no consumers.
func (e *Engine) deleteUprobe(u *Uprobe) {
	if !e.test.deleteWithoutMmapMutex {
		// uprobes_mmap_mutex: an MmapHook may have u on its pending
		// list (it collected u before the last consumer left). The
		// deletion must wait until that list is done with.
		e.mmapMu.Lock()
		defer e.mmapMu.Unlock()
	}
	e.treeMu.Lock()
	e.tree.Delete(treeKey(u.Inode, u.Offset))
	u.deleted = true
	// Model of the kernel's kfree/list poisoning: any pending list
	// still threaded through u is cut here. With uprobes_mmap_mutex held
	// there is none.
	u.pendingNext = &poisoned
	e.treeMu.Unlock()
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
		if h := e.test.walkBeforeMmapSem; h != nil {
			h(it.v)
		}
		if e.test.imapBeforeMmapSem {
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
func (e *Engine) Register(in *rmap.Inode, off uint64, insn []byte, arch any, c *Consumer) error {
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
	u.addConsumerLocked(c)
	if !first {
		return nil
	}
	in.AddUprobesCount(1)

	// Resolved (ret handling): ESRCH (the MM exited) and EEXIST (the
	// breakpoint is there already, e.g. copied by fork, or installed by a
	// concurrent MmapHook) are not failures and count as present; any
	// other error stops the walk and rolls the whole registration back.
	var ret error
	e.walkVMAs(u, func(it walkItem) bool {
		err := e.install(it.mm, it.vaddr, u)
		switch {
		case err == nil || errors.Is(err, syscall.EEXIST):
			it.v.AddBreakpointLocked(u.Offset)
		case errors.Is(err, syscall.ESRCH):
		default:
			ret = fmt.Errorf("register %v+%#x: mm %d: %w", in.Key, off, it.mm.ID, err)
			return false
		}
		return true
	})
	if ret != nil {
		u.delConsumerLocked(c)
		e.unregisterLocked(u) // _unregister_uprobe: remove what was installed
	}
	return ret
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
	if u == nil || !u.delConsumerLocked(c) {
		return fmt.Errorf("unregister %v+%#x: %w", in.Key, off, syscall.ENOENT)
	}
	if u.NumConsumers() != 0 {
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
	if h := e.test.beforeDelete; h != nil {
		h(u)
	}
	e.deleteUprobe(u)
	return ret
}

// MmapHook is mmap_uprobe: it installs the breakpoints of every uprobe
// with consumers on v's inode within v's range. A world calls it for every
// new VMA (mmap, exec, fork's copies) right after InsertVMALocked. It
// returns the first install error other than EEXIST/ESRCH (the remaining
// uprobes are skipped, as in the seed).
// Preconditions: v.MM.MmapSem is held for writing; v is inserted.
func (e *Engine) MmapHook(v *rmap.VMA) error {
	in := v.Inode
	if in == nil || !v.Exec { // valid_vma
		return nil
	}
	if in.UprobesCount() == 0 {
		return nil // bail-out
	}
	mm := v.MM
	e.mmapMu.Lock() // uprobes_mmap_mutex: sync with other mmap_uprobes and delete_uprobe
	defer e.mmapMu.Unlock()

	// add_to_temp_list: thread the uprobes in v's range on a pending list
	// under treelock (ascending offsets).
	var head, tail *Uprobe
	lo := treeKey(in, v.Pgoff)
	hi := treeKey(in, v.Pgoff+(v.End-v.Start))
	e.treeMu.Lock()
	e.tree.AscendRange(lo, hi, func(it treeItem) bool {
		it.u.pendingNext = nil
		if tail == nil {
			head = it.u
		} else {
			tail.pendingNext = it.u
		}
		tail = it.u
		return true
	})
	e.treeMu.Unlock()
	if h := e.test.mmapCollected; h != nil {
		h(v)
	}

	var ret error
	for u := head; u != nil; {
		next := u.pendingNext
		if next == &poisoned {
			// u was deleted while on our list (only possible when
			// delete_uprobe skips uprobes_mmap_mutex): the rest of
			// the list is lost, as with a freed list node.
			next = nil
		}
		u.pendingNext = nil // list_del
		cur := u
		u = next
		if ret != nil {
			continue
		}
		vaddr, _ := v.VaddrOf(cur.Offset)
		if cur.NumConsumers() == 0 {
			// cur is being unregistered (or rolled back, or not yet
			// registered) by the holder of i_mutex. Its walk may have
			// taken its temp list before v existed, so v is ours to
			// clean: a fork copies the parent's memory with its
			// breakpoints. Verify-opcode remove restores only a 0xCC.
			_ = e.remove(mm, vaddr, cur)
			continue
		}
		err := e.install(mm, vaddr, cur)
		switch {
		case err == nil || errors.Is(err, syscall.EEXIST):
			v.AddBreakpointLocked(cur.Offset)
		case errors.Is(err, syscall.ESRCH):
		default:
			ret = fmt.Errorf("mmap %v of mm %d: uprobe %#x: %w", v, mm.ID, cur.Offset, err)
		}
	}
	return ret
}

// MunmapHook is munmap_uprobe: it forgets v's breakpoints (dropping them
// from v.MM's uprobes_count) and arranges for the VMA object to become
// reusable (rmap.VMA.Reusable) once no register/unregister walk can still
// hold it. A world calls it for every VMA it removes (munmap, exit, exec),
// right after RemoveVMALocked.
// Preconditions: v.MM.MmapSem is held for writing; v is removed.
//
// Resolved: the seed calls synchronize_srcu here, under mmap_sem held for
// write, while a walker inside its srcu read section waits for that
// mmap_sem: a deadlock. The grace period is instead waited for by a
// reclaimer goroutine (the call_srcu pattern) that holds no lock; until it
// ends, the world must not reuse the VMA object (it allocates a new one).
// The walker never writes through v because v is dead (see walkVMAs).
func (e *Engine) MunmapHook(v *rmap.VMA) {
	v.ClearBreakpointsLocked() // seed: walk the tree and decrement mm->uprobes_count
	in := v.Inode
	if in == nil || !v.Exec || in.UprobesCount() == 0 {
		// Bail-out: no walk can hold v. Walks only take executable
		// VMAs, and a walk runs entirely while the inode's
		// uprobes_count is non-zero (Register increments it before
		// its walk, Unregister decrements it after), and v left the
		// mapping (under i_mmap_mutex) before this load.
		v.MarkReusable()
		return
	}
	if e.test.skipMunmapSync {
		v.MarkReusable() // planted bug: no grace period
		return
	}
	e.retireVMA(v)
}

// retireVMA queues v to become reusable after an srcu grace period.
func (e *Engine) retireVMA(v *rmap.VMA) {
	e.retireMu.Lock()
	e.retired = append(e.retired, v)
	start := !e.reclaiming
	e.reclaiming = true
	e.retireMu.Unlock()
	if start {
		go e.reclaim()
	}
}

// reclaim marks retired VMAs reusable, one grace period per batch, until
// the queue is empty. It holds no lock while waiting.
func (e *Engine) reclaim() {
	for {
		e.retireMu.Lock()
		batch := e.retired
		e.retired = nil
		if len(batch) == 0 {
			e.reclaiming = false
			e.retireMu.Unlock()
			return
		}
		e.retireMu.Unlock()
		e.srcu.Synchronize()
		for _, v := range batch {
			v.MarkReusable()
		}
	}
}

// Synchronize waits for an srcu grace period and then for every VMA retired
// before the call to be reusable. For worlds that want to reuse VMA objects
// promptly, and for tests. It must not be called with any mmap_sem held.
func (e *Engine) Synchronize() {
	e.retireMu.Lock()
	pending := append([]*rmap.VMA(nil), e.retired...)
	e.retireMu.Unlock()
	e.srcu.Synchronize()
	for _, v := range pending {
		for !v.Reusable() {
			e.srcu.Synchronize()
		}
	}
}

// LookupLocked finds the uprobe whose breakpoint is at vaddr of mm (the hit
// path). It does not allocate.
// Preconditions: mm.MmapSem held for reading (or writing).
func (e *Engine) LookupLocked(mm *rmap.MM, vaddr uint64) *Uprobe {
	v := mm.FindVMALocked(vaddr)
	if v == nil || v.Inode == nil {
		return nil
	}
	k := treeKey(v.Inode, v.OffsetOf(vaddr))
	e.treeMu.Lock()
	it, ok := e.tree.Get(k)
	e.treeMu.Unlock()
	if !ok {
		return nil
	}
	return it.u
}

// Dispatch counts one hit for every consumer of u and calls their handlers.
func (e *Engine) Dispatch(u *Uprobe, h Hit) {
	p := u.consumers.Load()
	if p == nil {
		return
	}
	for _, c := range *p {
		c.hits.Add(1)
		if c.Handler != nil {
			c.Handler(u, h)
		}
	}
}

// Uprobes returns a snapshot of the uprobes on in, by offset.
func (e *Engine) Uprobes(in *rmap.Inode) []*Uprobe {
	var us []*Uprobe
	e.treeMu.Lock()
	e.tree.AscendGreaterOrEqual(treeKey(in, 0), func(it treeItem) bool {
		if it.dev != in.Key.Dev || it.ino != in.Key.Ino {
			return false
		}
		us = append(us, it.u)
		return true
	})
	e.treeMu.Unlock()
	return us
}
