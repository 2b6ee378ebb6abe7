package proc

import (
	"errors"
	"syscall"

	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Internal breakpoints are the tracer's own, not engine uprobes: the
// loader's r_brk (rdebug.go) and the sigaction hooks (sigaction.go). They
// go through the one checked write path (writeBreakpoint) like the
// engine's, and differ only in what they are called in the error log.

// insertInternal writes the internal breakpoint site at va in p; one
// already there (EEXIST) counts as in. A failure other than the process
// being gone is logged as what. It reports whether the breakpoint is in.
// Preconditions: on the tracer thread.
func (w *World) insertInternal(p *process, va uint64, site bpSite, what string) bool {
	err := w.writeBreakpoint(p, va, site, true)
	if err == nil || errors.Is(err, syscall.EEXIST) {
		return true
	}
	if !errors.Is(err, syscall.ESRCH) {
		w.errorf("pid %d: %s at %#x: %v", p.pid, what, va, err)
	}
	return false
}

// removeInternal restores the byte under the internal breakpoint site at
// va in p; a failure other than the process being gone is logged as
// "restore what". Preconditions: on the tracer thread.
func (w *World) removeInternal(p *process, va uint64, site bpSite, what string) {
	if err := w.writeBreakpoint(p, va, site, false); err != nil && !errors.Is(err, syscall.ESRCH) {
		w.errorf("pid %d: restore %s at %#x: %v", p.pid, what, va, err)
	}
}

// internalFile returns what load finds in the file that m maps (through
// /proc/PID/map_files, so the very file even when its path is gone),
// loaded once per inode into cache, and the file's key. It returns nil
// where load found nothing, and where the engine watches the file: its
// breakpoints and the internal ones must not share bytes (maps of a
// watched loader are then synchronized only by the fallback paths).
// Preconditions: on the tracer thread.
func internalFile[T any](w *World, p *process, m *procfs.Mapping, cache map[rmap.InodeKey]*T, load func(path string) *T) (*T, rmap.InodeKey) {
	k := rmap.InodeKey{Dev: m.Dev, Ino: m.Ino}
	if w.watched[k] != nil {
		return nil, k
	}
	f, ok := cache[k]
	if !ok {
		f = load(procfs.MapFile(p.procPid(), m))
		cache[k] = f
	}
	return f, k
}
