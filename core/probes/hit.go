package probes

import "github.com/uprobefs/uprobefs/core/rmap"

// LookupLocked finds the uprobe whose breakpoint the engine has at vaddr
// of mm (the hit path; the kernel's find_active_uprobe), or nil: the VMA's
// breakpoint table (rmap.VMA.HasBreakpointLocked) is the truth of which
// breakpoints are in place, and the tree gives the uprobe. It does not
// allocate.
// Preconditions: mm.MmapSem held for reading (or writing).
func (e *Engine) LookupLocked(mm *rmap.MM, vaddr uint64) *Uprobe {
	v := mm.FindVMALocked(vaddr)
	if v == nil || v.Inode == nil || !v.Exec {
		return nil
	}
	off := v.OffsetOf(vaddr)
	if !v.HasBreakpointLocked(off) {
		return nil
	}
	k := treeKey(v.Inode, off)
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
	for _, c := range u.list() {
		if c.RetHandler != nil || !c.accepts(h.Pid) {
			continue // a return consumer counts returns (DispatchReturn)
		}
		c.hits.Add(1)
		if c.Handler != nil {
			c.Handler(u, h)
		}
	}
}

// DispatchReturn counts one return for every return consumer of u and calls
// their RetHandlers (uretprobe's handle_uretprobe_chain).
func (e *Engine) DispatchReturn(u *Uprobe, r Return) {
	for _, c := range u.list() {
		if c.RetHandler == nil || !c.accepts(r.Pid) {
			continue
		}
		c.hits.Add(1)
		c.RetHandler(u, r)
	}
}
