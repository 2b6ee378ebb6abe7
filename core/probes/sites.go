package probes

import "github.com/uprobefs/uprobefs/core/rmap"

// Site is one place where a uprobe's file offset is mapped executable: the
// MM, the address, and whether the engine has its breakpoint there.
type Site struct {
	MM        *rmap.MM
	Vaddr     uint64
	Installed bool
}

// Sites calls fn for every live executable VMA that maps in over the file
// offset off, until fn returns false: the status view's walk. It walks as
// Register does (walkVMAs): inside an srcu read section, a snapshot of the
// mapping under i_mmap_mutex, then each MM's mmap_sem for reading, skipping
// VMAs unmapped meanwhile. It holds no i_mutex, so it may run beside a
// registration and see it half done. fn runs with the MM's mmap_sem held
// for reading and must not take a lock of the hierarchy.
func (e *Engine) Sites(in *rmap.Inode, off uint64, fn func(Site) bool) {
	idx := e.srcu.ReadLock()
	defer e.srcu.ReadUnlock(idx)
	for _, v := range in.AppendVMAs(nil, off) {
		if !v.Exec {
			continue
		}
		mm := v.MM
		more := true
		mm.MmapSem.RLock()
		if v.LiveLocked() {
			vaddr, _ := v.VaddrOf(off)
			more = fn(Site{MM: mm, Vaddr: vaddr, Installed: v.HasBreakpointLocked(off)})
		}
		mm.MmapSem.RUnlock()
		if !more {
			return
		}
	}
}
