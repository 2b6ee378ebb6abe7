package manager

import (
	"slices"
	"strconv"
	"strings"
)

// Bounds of the error log: whatever a user writes, an entry keeps an excerpt
// of bounded size, and the log a bounded number of entries and bytes.
const (
	// errInputExcerpt is the most bytes of a refused input an entry keeps
	// (ErrorEntry.InputLen keeps its full length).
	errInputExcerpt = 160
	// errReasonMax is the most bytes of a reason an entry keeps.
	errReasonMax = 1024
	// errPathMax is the most bytes of a path an entry keeps.
	errPathMax = 4096
	// errorLogBytes bounds the excerpts, reasons and paths of all entries
	// together; the oldest entries go first.
	errorLogBytes = 2 << 20
)

// excerpt returns at most n bytes of s as a new string (never a slice of s:
// a kept excerpt must not hold a whole 64 KiB write in memory), marked with
// "..." when cut.
func excerpt(s string, n int) string {
	if len(s) <= n {
		return strings.Clone(s)
	}
	return strings.Clone(s[:n]) + "...(" + strconv.Itoa(len(s)) + " bytes)"
}

// boundEntry returns e with its input, reason and path cut to their bounds.
func boundEntry(e ErrorEntry) ErrorEntry {
	e.InputLen = len(e.Input)
	if len(e.Input) > errInputExcerpt {
		e.Input = strings.Clone(e.Input[:errInputExcerpt])
	} else {
		e.Input = strings.Clone(e.Input)
	}
	e.Reason = excerpt(e.Reason, errReasonMax)
	e.Path = excerpt(e.Path, errPathMax)
	return e
}

// size is what an entry counts against errorLogBytes.
func (e *ErrorEntry) size() int { return len(e.Input) + len(e.Reason) + len(e.Path) + 64 }

// appendErrorLocked appends e (bounded) to the error log, dropping the
// oldest entries beyond errorLogSize entries or errorLogBytes bytes.
//
// Preconditions: m.mu held.
func (m *Manager) appendErrorLocked(e ErrorEntry) {
	m.errlog = append(m.errlog, e)
	m.errlogBytes += e.size()
	drop := 0
	for len(m.errlog)-drop > errorLogSize || (m.errlogBytes > errorLogBytes && len(m.errlog)-drop > 1) {
		m.errlogBytes -= m.errlog[drop].size()
		drop++
	}
	if drop > 0 {
		m.errlog = slices.Delete(m.errlog, 0, drop)
	}
}
