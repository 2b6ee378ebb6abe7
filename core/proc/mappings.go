package proc

import (
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// addMappings reads p's maps, inserts (InsertVMALocked + MmapHook) every
// mapping of a watched inode that p's MM does not have yet, and puts the
// r_brk breakpoint (rdebug.go) if p has none and is to stay traced.
// Preconditions: on the tracer thread.
func (w *World) addMappings(p *process) error { return w.addScanned(p, nil) }

// addScanned is addMappings given the maps a scan of /proc read before p
// was seized (nil: none): they stand for p's maps if p's executable file
// mappings are still the same (mapsQuery.sameExec: a few ioctls where
// reading and parsing the maps again costs most of an attach), else the
// maps are read again.
func (w *World) addScanned(p *process, scanned []procfs.Mapping) error {
	ms := scanned
	if ms == nil || !p.maps.sameExec(ms) {
		var err error
		if ms, err = p.readMaps(); err != nil {
			return err
		}
	}
	err := w.insertMappings(p, w.selectMappings(p, ms))
	if w.hasWatched(p) || w.expecting(p) {
		w.setRbrk(p, ms)
		w.placeSigHooks(p, ms)
	}
	return err
}

func (w *World) insertMappings(p *process, ms []procfs.Mapping) error {
	w.lockMM(p.mm)
	defer p.mm.MmapSem.Unlock()
	return w.insertMappingsLocked(p, ms)
}

// insertMappingsLocked is insertMappings with p.mm.MmapSem held for writing.
// A process being detached (or gone) gets no VMA: its breakpoints have been
// restored, and one installed now would stay behind after the detach.
func (w *World) insertMappingsLocked(p *process, ms []procfs.Mapping) error {
	if p.detaching || p.gone {
		return nil
	}
	var first error
	mm := p.mm
	for i := range ms {
		m := &ms[i]
		in := w.watched[rmap.InodeKey{Dev: m.Dev, Ino: m.Ino}]
		if in == nil || m.Ino == 0 {
			continue
		}
		if v := mm.FindVMALocked(m.Start); v != nil {
			if v.Start == m.Start && v.End == m.End && v.Inode == in && v.Pgoff == m.Off {
				continue
			}
			// The mapping changed under an old VMA: it is gone.
			mm.RemoveVMALocked(v)
			w.eng.MunmapHook(v)
			w.forgetRange(p, v.Start, v.End)
		}
		v := &rmap.VMA{MM: mm, Start: m.Start, End: m.End, Pgoff: m.Off, Inode: in, Exec: m.Exec()}
		if overlaps(mm, v) {
			continue
		}
		mm.InsertVMALocked(v)
		if err := w.eng.MmapHook(v); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func overlaps(mm *rmap.MM, v *rmap.VMA) bool {
	for _, o := range mm.VMAsLocked() {
		if o.Start < v.End && v.Start < o.End {
			return true
		}
	}
	return false
}

// removeMappings removes the VMAs of p selected by which from the engine,
// restoring first every breakpoint the engine has inside them (the process
// lives on: Unwatch, detach).
// Preconditions: on the tracer thread.
func (w *World) removeMappings(p *process, which func(*rmap.VMA) bool) {
	mm := p.mm
	w.lockMM(mm)
	defer mm.MmapSem.Unlock()
	for _, v := range mm.VMAsLocked() {
		if !which(v) {
			continue
		}
		if err := w.eng.RestoreVMALocked(v); err != nil {
			w.errorf("pid %d: %v", p.pid, err)
		}
		mm.RemoveVMALocked(v)
		w.eng.MunmapHook(v)
	}
}

// syncMappings makes p's MM match /proc/PID/maps for watched inodes: VMAs
// whose mapping is gone or changed leave the engine (nothing is written
// there), new mappings of watched inodes enter it; libraries mapped since
// get their sigaction hooks.
// Preconditions: on the tracer thread.
func (w *World) syncMappings(p *process) error {
	ms, err := p.readMaps()
	if err != nil {
		return err
	}
	err = w.syncMappingsTo(p, w.selectMappings(p, ms))
	w.placeSigHooks(p, ms)
	return err
}

func (w *World) syncMappingsTo(p *process, ms []procfs.Mapping) error {
	mm := p.mm
	w.lockMM(mm)
	defer mm.MmapSem.Unlock()
	for _, v := range mm.VMAsLocked() {
		if !stillMapped(ms, v) {
			mm.RemoveVMALocked(v)
			w.eng.MunmapHook(v)
			w.forgetRange(p, v.Start, v.End)
		}
	}
	for va := range p.sigHooks {
		if !execMapped(ms, va) {
			p.forgetSigHooks(va, va+1) // its file was unmapped
		}
	}
	return w.insertMappingsLocked(p, ms)
}

// execMapped reports whether ms maps va executable.
func execMapped(ms []procfs.Mapping, va uint64) bool {
	for i := range ms {
		if va >= ms[i].Start && va < ms[i].End {
			return ms[i].Exec()
		}
	}
	return false
}

// stillMapped reports whether ms has v's mapping unchanged.
func stillMapped(ms []procfs.Mapping, v *rmap.VMA) bool {
	for i := range ms {
		m := &ms[i]
		if m.Start == v.Start {
			return m.End == v.End && m.Off == v.Pgoff && v.Inode != nil &&
				m.Dev == v.Inode.Key.Dev && m.Ino == v.Inode.Key.Ino && m.Exec() == v.Exec
		}
	}
	return false
}

// forgetRange forgets the history of p's breakpoints in [start, end): the
// range no longer maps what they were written into (the engine's
// MunmapHook forgets the breakpoints themselves).
func (w *World) forgetRange(p *process, start, end uint64) {
	p.everMu.Lock()
	for va := range p.everBp {
		if va >= start && va < end && !p.internalBp(va) {
			delete(p.everBp, va)
		}
	}
	p.everMu.Unlock()
}

// hasWatched reports whether p maps a watched inode.
func (w *World) hasWatched(p *process) bool {
	p.mm.MmapSem.RLock()
	defer p.mm.MmapSem.RUnlock()
	for _, v := range p.mm.VMAsLocked() {
		if v.Inode != nil && w.watched[v.Inode.Key] != nil {
			return true
		}
	}
	return false
}
