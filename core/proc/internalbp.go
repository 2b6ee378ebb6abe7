package proc

import (
	"errors"
	"syscall"
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
