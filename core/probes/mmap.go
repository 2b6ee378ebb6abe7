package probes

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/uprobefs/uprobefs/core/rmap"
)

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
	e.test.onMmapCollected(v)
	if e.batch != nil && head != nil && head.pendingNext != nil { // a run of two or more
		bv := batchVMA{v: v}
		for u := head; u != nil && u != &poisoned; u = u.pendingNext {
			vaddr, _ := v.VaddrOf(u.Offset)
			bv.items = append(bv.items, batchItem{u: u, vaddr: vaddr})
		}
		defer e.batchStart(bv)()
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
		if err := e.installBreakpointLocked(v, vaddr, cur); err != nil {
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
	if e.test.plantedSkipMunmapSync() {
		v.MarkReusable() // planted bug: no grace period
		return
	}
	if e.test.plantedSyncUnderMmapSem() {
		// Planted bug: the seed's synchronize_srcu under mmap_sem.
		e.srcu.Synchronize()
		v.MarkReusable()
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

// RestoreVMALocked removes every breakpoint the engine has in v through
// the Remove hook (verify-opcode: only where the int3 is) and forgets it:
// what a world does before it stops tracing a process whose memory lives on
// (detach), so that the breakpoint table and the memory never disagree. It
// returns the first Remove error other than ESRCH; every breakpoint is
// forgotten either way.
// Preconditions: v.MM.MmapSem held for writing; v is live.
func (e *Engine) RestoreVMALocked(v *rmap.VMA) error {
	if v.Inode == nil {
		return nil
	}
	var ret error
	for _, off := range v.BreakpointOffsetsLocked() {
		if u := e.findUprobe(v.Inode, off); u != nil {
			vaddr, _ := v.VaddrOf(off)
			if err := e.remove(v.MM, vaddr, u); err != nil && !errors.Is(err, syscall.ESRCH) && ret == nil {
				ret = fmt.Errorf("restore mm %d %#x: %w", v.MM.ID, vaddr, err)
			}
		}
		v.RemoveBreakpointLocked(off)
	}
	return ret
}

// UprobeAt returns the uprobe at (in, off), or nil.
func (e *Engine) UprobeAt(in *rmap.Inode, off uint64) *Uprobe { return e.findUprobe(in, off) }

// RemoveLocked removes the breakpoint the engine has at vaddr of mm from
// this MM only (through the Remove hook, verify-opcode) and forgets it
// there: for a world that cannot step over it in this process. The uprobe
// stays registered, and a later mapping of the file in mm gets it again.
// It returns the Remove error, or nil if the engine had no breakpoint
// there.
// Preconditions: mm.MmapSem held for writing.
func (e *Engine) RemoveLocked(mm *rmap.MM, vaddr uint64) error {
	v := mm.FindVMALocked(vaddr)
	if v == nil || v.Inode == nil {
		return nil
	}
	off := v.OffsetOf(vaddr)
	if !v.HasBreakpointLocked(off) {
		return nil
	}
	var err error
	if u := e.findUprobe(v.Inode, off); u != nil {
		err = e.remove(mm, vaddr, u)
	}
	v.RemoveBreakpointLocked(off)
	return err
}
