package proc

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"time"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/objfile"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// The dynamic loader's r_brk.
//
// We cannot see a traced process's mmap and munmap calls, but the glibc
// dynamic loader announces every change of its list of loaded objects by
// calling _dl_debug_state (the address in r_debug.r_brk, an empty function
// that exists for debuggers): with r_state RT_ADD before it maps a library,
// RT_DELETE before it unmaps one, and RT_CONSISTENT once the list is
// consistent again — after the mapping and before the library's
// constructors run (at start-up and at dlopen), and after the unmapping at
// dlclose. Every traced process whose interpreter is such a loader gets an
// internal breakpoint there (not an engine uprobe: it lives in the
// process's private text like the others, in p.rbrk). When it is hit with
// r_state RT_CONSISTENT (or when r_state cannot be read), the tracer
// rescans /proc/PID/maps and diffs it against the process's MM
// (syncMappings): mappings of watched inodes that are new go through
// InsertVMALocked + MmapHook, VMAs that are gone through RemoveVMALocked +
// MunmapHook (without writing anything: the range may map something else
// by now). Then it steps over the instruction like a hit.

// ldso is what we know of one dynamic loader file.
type ldso struct {
	off    uint64        // file offset of _dl_debug_state
	plan   *install.Plan // its step-over plan
	rstate uint64        // link-time vaddr of _r_debug.r_state, 0 if unknown
	first  uint64        // link-time vaddr of the first PT_LOAD, page aligned
}

// rStateOff is the offset of r_state in struct r_debug (int r_version;
// struct link_map *r_map; ElfW(Addr) r_brk; enum r_state; ...).
const rStateOff = 24

// loadLdso reads the loader file at path (an open path of the mapped file).
func loadLdso(path string) (*ldso, error) {
	f, err := objfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	off, err := f.Resolve("_dl_debug_state")
	if err != nil {
		return nil, err
	}
	plan, err := f.Analyze(off)
	if err != nil {
		return nil, err
	}
	l := &ldso{off: off, plan: plan}
	ef, err := elf.Open(path)
	if err != nil {
		return l, nil
	}
	defer ef.Close()
	first := ^uint64(0)
	for _, ph := range ef.Progs {
		if ph.Type == elf.PT_LOAD && ph.Vaddr < first {
			first = ph.Vaddr
		}
	}
	if first == ^uint64(0) {
		return l, nil
	}
	l.first = first &^ 0xfff
	syms, _ := ef.DynamicSymbols()
	for _, s := range syms {
		if s.Name == "_r_debug" && s.Value != 0 {
			l.rstate = s.Value + rStateOff
			break
		}
	}
	return l, nil
}

// setRbrk puts the internal breakpoint on the loader's _dl_debug_state in
// p, if p has a glibc-like loader and no r_brk yet. ms is p's maps.
// Preconditions: on the tracer thread.
func (w *World) setRbrk(p *process, ms []procfs.Mapping) {
	if p.rbrk != 0 || p.detaching || p.gone {
		return
	}
	base, _ := procfs.Auxv(p.procPid(), procfs.AtBase)
	if base == 0 {
		return
	}
	var lm *procfs.Mapping
	for i := range ms {
		if ms[i].Start == base && ms[i].Ino != 0 {
			lm = &ms[i]
			break
		}
	}
	if lm == nil {
		return
	}
	l, k := internalFile(w, p, lm, w.ldsos, func(path string) *ldso {
		l, err := loadLdso(path)
		if err != nil {
			w.log("pid %d: loader %s: no r_brk: %v", p.pid, lm.Path, err)
			return nil
		}
		return l
	})
	if l == nil {
		return
	}
	bias := base - l.first
	for i := range ms {
		m := &ms[i]
		va, ok := m.Vaddr(l.off)
		if m.Dev != lm.Dev || m.Ino != lm.Ino || !m.Exec() || !ok {
			continue
		}
		site := bpSite{key: k, off: l.off, insn: l.plan.Insn}
		if !w.insertInternal(p, va, site, "r_brk") {
			return
		}
		p.rbrk, p.rbrkPlan, p.rbrkSite = va, l.plan, site
		if l.rstate != 0 {
			p.rstate = l.rstate + bias
		}
		return
	}
}

// removeRbrk restores the loader's byte under p's internal breakpoint.
// Preconditions: on the tracer thread.
func (w *World) removeRbrk(p *process) {
	if p.rbrk == 0 {
		return
	}
	w.removeInternal(p, p.rbrk, p.rbrkSite, "r_brk")
	p.rbrk = 0
}

// rbrkHit handles a trap of th on its process's r_brk: resynchronize the
// MM with the maps when the loader's list is consistent, step over, and
// detach the process if it maps no watched inode any more.
// Preconditions: on the tracer thread; th is stopped at the trap.
func (w *World) rbrkHit(th *thread, addr uint64) {
	p := th.proc
	consistent := true
	if p.rstate != 0 {
		var b [4]byte
		if p.as.ReadMemory(p.rstate, b[:]) == nil && binary.LittleEndian.Uint32(b[:]) != 0 {
			consistent = false // RT_ADD or RT_DELETE: the change is still to come
		}
	}
	if p.startup {
		// A new image's loader at work (stats.go): until its first
		// consistent list, the initial libraries mapped.
		defer spent(&w.execProf.traps, &w.execProf.loader, time.Now())
		p.startup = !consistent
	}
	if consistent {
		if err := w.syncMappings(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.errorf("pid %d: maps: %v", p.pid, err)
		}
	}
	u := &probes.Uprobe{Insn: p.rbrkPlan.Insn, Arch: p.rbrkPlan}
	if !w.stepOver(th, u, addr) {
		return
	}
	if consistent && !p.detaching {
		if w.hasWatched(p) {
			p.expect = time.Time{}
		} else if !w.expecting(p) {
			w.detachProcess(p) // th is stopped: detached at once
			return
		}
	}
	w.resume(th, 0)
}
