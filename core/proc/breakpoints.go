package proc

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/ledger"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// The breakpoint writes. The engine keeps the one table of which
// breakpoints are in place (rmap.VMA's breakpoint set: recorded before the
// byte is written, forgotten after it is restored), and the hit path reads
// it (Engine.LookupLocked). Every write of a breakpoint into a tracee, and
// every restore of one — the engine's install and remove hooks below, the
// world's internal breakpoints (the loader's r_brk, the sigaction hooks),
// the cleaning of a fork child's copies, the restart of a trap on a stale
// copy, a give-up — goes through writeBreakpointLocked, which checks, under
// the MM's lock, that the address still maps that file at that offset and
// holds that instruction (every byte of it), then writes one byte. The
// world keeps only the history of the addresses it ever wrote
// (process.everBp), to clean the copies a fork child inherits and to
// restart a trap on a breakpoint that was removed meanwhile.

// bpSite is what a breakpoint write at an address expects to find: the
// address maps the file key at file offset off, and holds the instruction
// insn read from that file (or, with the breakpoint in, int3 followed by
// the rest of insn). Immutable.
type bpSite struct {
	key  rmap.InodeKey
	off  uint64
	insn []byte
}

func uprobeSite(u *probes.Uprobe) bpSite {
	return bpSite{key: u.Inode.Key, off: u.Offset, insn: u.Insn}
}

// EngineOptions returns the engine options the real world needs: the
// verify-opcode install and remove through the world's checked write path.
// Create the Engine with them.
func EngineOptions() probes.EngineOptions {
	return probes.EngineOptions{Install: installHook, Remove: removeHook, Flush: flushHook, Changed: changedHook, Batch: batchHook}
}

// installHook is install_breakpoint. Preconditions: mm.MmapSem held.
func installHook(mm *rmap.MM, vaddr uint64, u *probes.Uprobe) error {
	if p := procOf(mm); p != nil {
		return p.install(vaddr, u)
	}
	return install.InsertBreakpoint(mm.AS, vaddr, u.Insn)
}

// removeHook is remove_breakpoint. Preconditions: mm.MmapSem held.
func removeHook(mm *rmap.MM, vaddr uint64, u *probes.Uprobe) error {
	if p := procOf(mm); p != nil {
		return p.remove(vaddr, u)
	}
	return install.RemoveBreakpoint(mm.AS, vaddr, u.Insn)
}

// install writes u's breakpoint at vaddr: any jump site whose displaced
// range covers vaddr goes back to an int3 first (coverJump), a stale jmp a
// dead daemon left is taken back, and the int3 may become a jump site.
// Preconditions: p.mm.MmapSem held.
func (p *process) install(vaddr uint64, u *probes.Uprobe) error {
	if err := p.coverJump(vaddr); err != nil {
		return err
	}
	if err := p.reclaimStaleJump(vaddr, u); err != nil {
		return err
	}
	// Within a run of breakpoint writes the int3 goes into the run's
	// copy, written back with the others when the run ends (textbatch.go).
	err := p.writeBreakpointVia(deferMem{p.as}, vaddr, uprobeSite(u), true)
	if err == nil || errors.Is(err, syscall.EEXIST) {
		p.wantJump(vaddr, u) // the int3 is in: it may become a jump
	}
	return err
}

// remove restores the instruction of u's breakpoint at vaddr (a jump site
// there goes first); the jump sites it covered are looked at again
// (uncoverJumps: they stay traps in this process).
// Preconditions: p.mm.MmapSem held.
func (p *process) remove(vaddr uint64, u *probes.Uprobe) error {
	if err := p.removeJump(vaddr); err != nil {
		return err
	}
	err := p.writeBreakpointLocked(vaddr, uprobeSite(u), false)
	if err == nil {
		p.uncoverJumps(vaddr)
	}
	return err
}

// procOf returns the process of a real world's MM (nil for another world's
// address space: the engine's defaults then).
func procOf(mm *rmap.MM) *process {
	if as, ok := mm.AS.(*addressSpace); ok {
		return as.proc
	}
	return nil
}

// writeBreakpointLocked is the one checked write path (see the top of this
// file): it inserts (insert) or removes the breakpoint of site s at vaddr
// of p, after checking that vaddr maps s's file at s's offset
// (PROCMAP_QUERY, or the maps text where the kernel has none) and holds
// its instruction (install.InsertBreakpoint / RemoveBreakpoint compare
// every byte). A range that maps something else is reported as gone
// (errMappingGone, like an exited MM for the engine). An insertion is
// recorded in p's history first.
// Preconditions: p.mm.MmapSem held (for reading or writing).
func (p *process) writeBreakpointLocked(vaddr uint64, s bpSite, insert bool) error {
	return p.writeBreakpointVia(p.as, vaddr, s, insert)
}

// writeBreakpointVia is writeBreakpointLocked writing through mem (p.as,
// or deferMem{p.as}).
func (p *process) writeBreakpointVia(mem install.Memory, vaddr uint64, s bpSite, insert bool) error {
	if err := p.checkMapped(vaddr, s); err != nil {
		return err
	}
	led := p.as.w.opts.Ledger
	if insert {
		p.everMu.Lock()
		p.everBp[vaddr] = s
		p.everMu.Unlock()
		if led != nil {
			// Recorded before it is written: a daemon killed in
			// between leaves the guardian an entry whose byte is
			// not an int3 (skipped), never an int3 without entry.
			e := ledger.Entry{Owner: p.pid, Pid: p.procPid(), Vaddr: vaddr, Dev: s.key.Dev, Ino: s.key.Ino, Off: s.off, Orig: s.insn[0]}
			if err := led.Add(e); err != nil {
				return err
			}
		}
		return goneIfFault(install.InsertBreakpoint(mem, vaddr, s.insn))
	}
	err := install.RemoveBreakpoint(p.as, vaddr, s.insn)
	if led != nil && err == nil {
		led.Remove(p.pid, vaddr)
	}
	return goneIfFault(err)
}

// writeBreakpoint is writeBreakpointLocked taking p's mmap_sem for
// reading. Preconditions: on the tracer thread, which does not hold it.
func (w *World) writeBreakpoint(p *process, vaddr uint64, s bpSite, insert bool) error {
	p.mm.MmapSem.RLock()
	defer p.mm.MmapSem.RUnlock()
	return p.writeBreakpointLocked(vaddr, s, insert)
}

// errMappingGone says that a VMA of an MM no longer maps what it did in the
// process (unmapped, not yet seen by the tracer): for the engine, like an
// exited MM.
var errMappingGone = fmt.Errorf("mapping gone: %w", syscall.ESRCH)

// goneIfFault turns EFAULT (the address is not mapped any more: the VMA is
// stale until the tracer's next look at the maps) into errMappingGone.
func goneIfFault(err error) error {
	if err != nil && errors.Is(err, syscall.EFAULT) {
		return fmt.Errorf("%v: %w", err, errMappingGone)
	}
	return err
}

// checkMapped verifies, before a breakpoint write at vaddr, that the
// process still maps s's file at s's offset there, executable. The MM
// learns of unmaps only at the loader's r_brk and at exit: in between (or
// after a munmap the loader did not announce) the range may map something
// else, which must never be written (invariant 3). One PROCMAP_QUERY ioctl
// (Linux >= 6.11), else a read of the maps.
func (p *process) checkMapped(vaddr uint64, s bpSite) error {
	m, ok := p.batches.mapping(vaddr) // a run of writes asked once (textbatch.go)
	if !ok {
		var err error
		if m, err = p.maps.query(p.procPid(), vaddr); err != nil {
			return fmt.Errorf("pid %d %#x: %v: %w", p.pid, vaddr, err, errMappingGone)
		}
	}
	if m.Dev != s.key.Dev || m.Ino != s.key.Ino || m.Off+(vaddr-m.Start) != s.off || !m.Exec() {
		return fmt.Errorf("pid %d %#x: maps %x:%d+%#x, not %v+%#x: %w", p.pid, vaddr, m.Dev, m.Ino, m.Off+(vaddr-m.Start), s.key, s.off, errMappingGone)
	}
	return nil
}

// mapsQuery answers which mapping covers an address in one process:
// PROCMAP_QUERY on an open /proc/PID/maps, or the maps text where the
// kernel has no PROCMAP_QUERY. Safe for concurrent use.
type mapsQuery struct {
	f *procfs.MapsFile // nil: use the text
}

func openMapsQuery(pid int) mapsQuery {
	f, err := procfs.OpenMaps(pid)
	if err != nil {
		return mapsQuery{}
	}
	if _, err := f.Query(0); errors.Is(err, procfs.ErrNoQuery) {
		f.Close()
		return mapsQuery{}
	}
	return mapsQuery{f: f}
}

func (q mapsQuery) close() {
	if q.f != nil {
		q.f.Close()
	}
}

// sameExec reports whether pid's executable file mappings are still those
// of ms (maps read earlier): the same ranges of the same files at the same
// offsets, asked with one PROCMAP_QUERY per mapping. False where the
// kernel has no PROCMAP_QUERY.
func (q mapsQuery) sameExec(ms []procfs.Mapping) bool {
	if q.f == nil {
		return false
	}
	i := 0
	next := func() *procfs.Mapping {
		for ; i < len(ms); i++ {
			if ms[i].Exec() && ms[i].Ino != 0 {
				i++
				return &ms[i-1]
			}
		}
		return nil
	}
	for addr := uint64(0); ; {
		m, err := q.f.QueryNext(addr, true)
		want := next()
		if err != nil {
			return want == nil && errors.Is(err, syscall.ENOENT)
		}
		if want == nil || m.Start != want.Start || m.End != want.End || m.Off != want.Off || m.Dev != want.Dev || m.Ino != want.Ino {
			return false
		}
		addr = m.End
	}
}

// query returns the mapping covering vaddr in pid.
func (q mapsQuery) query(pid int, vaddr uint64) (procfs.Mapping, error) {
	if q.f != nil {
		return q.f.Query(vaddr)
	}
	ms, err := procfs.ReadMaps(pid)
	if err != nil {
		return procfs.Mapping{}, err
	}
	for _, m := range ms {
		if vaddr >= m.Start && vaddr < m.End {
			return m, nil
		}
	}
	return procfs.Mapping{}, syscall.ENOENT
}
