package probes

import (
	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/rmap"
)

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
func (e *Engine) allocUprobeLocked(in *rmap.Inode, off uint64, insn []byte, arch *install.Plan) *Uprobe {
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
	if !e.test.plantedDeleteWithoutMmapMutex() {
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
