package proc

import (
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Process filters: a watched inode may be limited to the processes a
// predicate selects (SetFilter). The breakpoints of such an inode go only
// into selected processes: the VMAs of the inode enter the MM of a process
// only if it is selected (selectMappings, before every insertion of
// mappings: attach, exec, fork, resync), and a process that maps the inode
// but is not selected is not attached at all by Watch's scan, by the /proc
// rescan or at an open of the inode (a library). A process held at an exec
// of the inode is seized, and checked after the exec (its command name
// changes there): not selected, it gets no VMA and is detached before its
// first instruction.
//
// What is guaranteed: a process the predicate rejects whenever its mappings
// are read never has a breakpoint of the inode, and stays untraced unless it
// execs the inode or maps another watched inode that selects it. What is
// not: the predicate is asked again only when a process's mappings are read
// (attach, exec, fork, dlopen/dlclose); a process that would be selected or
// rejected later (a pid reused, a command renamed) keeps the decision made
// then.

// SetFilter limits the processes that in's breakpoints go into to those
// selects selects (nil: every process). It is called before Watch of in,
// and lasts until Unwatch. selects runs on the tracer thread: it must not
// wait for the tracer, and should be quick (a read of /proc/PID/status is
// fine).
func (w *World) SetFilter(in *rmap.Inode, selects func(pid int) bool) error {
	if w.closed.Load() {
		return ErrClosed
	}
	return w.t.do(func() {
		w.forgetFilter(in.Key)
		if selects == nil {
			return
		}
		if w.filters == nil {
			w.filters = map[rmap.InodeKey]func(int) bool{}
		}
		w.filters[in.Key] = selects
	})
}

// forgetFilter drops the filter of k and every verdict it gave.
// Preconditions: on the tracer thread.
func (w *World) forgetFilter(k rmap.InodeKey) {
	delete(w.filters, k)
	for _, p := range w.procs {
		delete(p.selected, k)
	}
}

// selects reports whether the breakpoints of the inode k may go into pid.
// Preconditions: on the tracer thread.
func (w *World) selects(k rmap.InodeKey, pid int) bool {
	f := w.filters[k]
	return f == nil || f(pid)
}

// selectedPids returns the pids that in's filter selects.
// Preconditions: on the tracer thread.
func (w *World) selectedPids(k rmap.InodeKey, pids []int) []int {
	if w.filters[k] == nil {
		return pids
	}
	var out []int
	for _, pid := range pids {
		if w.selects(k, pid) {
			out = append(out, pid)
		}
	}
	return out
}

// selectsMapped reports whether pid maps a watched inode whose filter
// selects it. Preconditions: on the tracer thread.
func (w *World) selectsMapped(pid int) bool {
	if len(w.filters) == 0 {
		return true
	}
	for k := range w.watched {
		if procfs.PidMaps(pid, procfs.FileID(k)) && w.selects(k, pid) {
			return true
		}
	}
	return false
}

// selectMappings returns the mappings of ms that may enter p's MM: those
// of inodes whose filter selects p. Each filter is asked once per process
// record (a new one at every exec), so that a resync never drops a VMA it
// inserted before. It is called before the MM's mmap_sem is taken (a
// filter reads /proc). Preconditions: on the tracer thread.
func (w *World) selectMappings(p *process, ms []procfs.Mapping) []procfs.Mapping {
	if len(w.filters) == 0 && p.selected == nil {
		return ms
	}
	out := ms[:0:0]
	for _, m := range ms {
		k := rmap.InodeKey{Dev: m.Dev, Ino: m.Ino}
		ok, seen := p.selected[k]
		if !seen && w.filters[k] != nil {
			if p.selected == nil {
				p.selected = map[rmap.InodeKey]bool{}
			}
			ok, seen = w.selects(k, p.pid), true
			p.selected[k] = ok
		}
		if seen && !ok {
			continue
		}
		out = append(out, m)
	}
	return out
}
