package proc

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// The breakpoint writes. The engine keeps the one table of which
// breakpoints are in place (rmap.VMA's breakpoint set: recorded before the
// byte is written, forgotten after it is restored), and the hit path reads
// it (Engine.LookupLocked); every write of a breakpoint into a tracee goes
// through the engine's hooks below, or through Engine.RestoreVMALocked,
// which calls them. The world keeps only the history of the addresses it
// ever wrote, with their original bytes (process.everBp), to clean the
// copies a fork child inherits and to restart a trap on a breakpoint that
// was removed meanwhile.

// EngineOptions returns the engine options the real world needs: the
// verify-opcode install and remove with the checks of a traced process
// (the range still maps the file there) and the history of written
// addresses. Create the Engine with them.
func EngineOptions() probes.EngineOptions {
	return probes.EngineOptions{Install: installHook, Remove: removeHook}
}

// installHook is install_breakpoint. Preconditions: mm.MmapSem held.
func installHook(mm *rmap.MM, vaddr uint64, u *probes.Uprobe) error {
	as, ok := mm.AS.(*addressSpace)
	if !ok {
		return install.InsertBreakpoint(mm.AS, vaddr, u.Insn[0])
	}
	if err := checkMapped(mm, as, vaddr, u); err != nil {
		return err
	}
	p := as.proc
	p.everMu.Lock()
	p.everBp[vaddr] = u.Insn[0]
	p.everMu.Unlock()
	return goneIfFault(install.InsertBreakpoint(as, vaddr, u.Insn[0]))
}

// removeHook is remove_breakpoint. Preconditions: mm.MmapSem held.
func removeHook(mm *rmap.MM, vaddr uint64, u *probes.Uprobe) error {
	as, ok := mm.AS.(*addressSpace)
	if !ok {
		return install.RemoveBreakpoint(mm.AS, vaddr, u.Insn[0])
	}
	err := checkMapped(mm, as, vaddr, u)
	if err == nil {
		err = goneIfFault(install.RemoveBreakpoint(as, vaddr, u.Insn[0]))
	}
	return err
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
// process still maps u's file at u's offset there. The MM learns of unmaps
// only at the loader's r_brk and at exit: in between (or after a munmap the
// loader did not announce) the range may map something else, which must
// never be written (invariant 3). One stat of /proc/PID/map_files/RANGE,
// or a read of the maps if the range was split.
// Preconditions: mm.MmapSem held.
func checkMapped(mm *rmap.MM, as *addressSpace, vaddr uint64, u *probes.Uprobe) error {
	v := mm.FindVMALocked(vaddr)
	if v == nil || v.Inode == nil {
		return fmt.Errorf("pid %d %#x: no VMA: %w", as.pid, vaddr, errMappingGone)
	}
	k := v.Inode.Key
	var st unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/map_files/%x-%x", as.pid, v.Start, v.End), &st) == nil {
		if st.Dev == k.Dev && st.Ino == k.Ino {
			return nil
		}
		return fmt.Errorf("pid %d %#x: maps another file: %w", as.pid, vaddr, errMappingGone)
	}
	ms, err := procfs.ReadMaps(as.pid)
	if err != nil {
		return fmt.Errorf("pid %d: %v: %w", as.pid, err, syscall.ESRCH)
	}
	for i := range ms {
		m := &ms[i]
		if vaddr >= m.Start && vaddr < m.End {
			if m.Dev == k.Dev && m.Ino == k.Ino && m.Off+(vaddr-m.Start) == u.Offset {
				return nil
			}
			break
		}
	}
	return fmt.Errorf("pid %d %#x: not mapped as in the MM: %w", as.pid, vaddr, errMappingGone)
}

// restoreByte writes orig at va if an int3 is there.
func restoreByte(as *addressSpace, va uint64, orig byte) {
	var b [1]byte
	if as.ReadMemory(va, b[:]) == nil && b[0] == 0xcc && orig != 0xcc {
		b[0] = orig
		as.WriteMemory(va, b[:])
	}
}
