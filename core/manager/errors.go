package manager

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/objfile"
)

// Error is the error of every Manager operation that refuses a request: an
// errno for the system call and a reason a person can read. The filesystem
// converts it with errors.As in one place.
type Error struct {
	Errno  syscall.Errno
	Reason string
}

func (e *Error) Error() string { return e.Reason }

// Unwrap lets errors.Is(err, syscall.EINVAL) work.
func (e *Error) Unwrap() error { return e.Errno }

func errorf(errno syscall.Errno, format string, args ...any) *Error {
	return &Error{Errno: errno, Reason: fmt.Sprintf(format, args...)}
}

// AsError converts err to an *Error: an *Error in its chain as it is, a
// syscall.Errno in its chain with err's text as reason, anything else as EIO.
// nil gives nil.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &Error{Errno: errno, Reason: err.Error()}
	}
	if errors.Is(err, fs.ErrNotExist) {
		return &Error{Errno: syscall.ENOENT, Reason: err.Error()}
	}
	return &Error{Errno: syscall.EIO, Reason: err.Error()}
}

// objfileError maps the errors of objfile.Open, Resolve and Analyze.
func objfileError(err error) *Error {
	switch {
	case errors.Is(err, objfile.ErrNotELF), errors.Is(err, objfile.ErrNotX86_64):
		return &Error{Errno: syscall.ENOEXEC, Reason: err.Error()}
	case errors.Is(err, objfile.ErrNoSymbol):
		return &Error{Errno: syscall.ENOENT, Reason: err.Error()}
	case errors.Is(err, objfile.ErrSyntax), errors.Is(err, objfile.ErrNotExecutable),
		errors.Is(err, objfile.ErrPastSymbol), errors.Is(err, objfile.ErrNotBoundary),
		errors.Is(err, install.ErrRefused):
		return &Error{Errno: syscall.EINVAL, Reason: err.Error()}
	}
	return AsError(err)
}

// ErrorEntry is one refused request of the error log.
type ErrorEntry struct {
	Time   time.Time
	Caller Caller
	Path   string // at most errPathMax bytes (then cut, marked "...")
	// Input is an excerpt of the refused input: its first errInputExcerpt
	// bytes; InputLen is the input's full length.
	Input    string
	InputLen int
	Errno    syscall.Errno
	Reason   string // at most errReasonMax bytes (then cut, marked "...")
}

// Line formats the entry as one line of the control directory's errors file
// (the path escaped by EscapeField, the input Go-quoted, the reason escaped
// by EscapeText: one entry is one line, whatever the path or input holds):
//
//	2025-12-01T22:53:00.123Z uid=0 pid=42 EINVAL path=/tmp/x/demo input="bogus!" reason: line 1: ...
func (e ErrorEntry) Line() string {
	in := e.Input
	if len(in) > errInputExcerpt {
		in = in[:errInputExcerpt]
	}
	more := ""
	if n := max(e.InputLen, len(e.Input)); n > len(in) {
		more = fmt.Sprintf("...(%d bytes)", n)
	}
	return fmt.Sprintf("%s uid=%d pid=%d %s path=%s input=%q%s reason: %s\n",
		e.Time.UTC().Format("2006-01-02T15:04:05.000Z"), e.Caller.Uid, e.Caller.Pid,
		errnoName(e.Errno), EscapeField(e.Path), in, more, EscapeText(e.Reason))
}

func errnoName(e syscall.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return "errno" + strconv.Itoa(int(e))
}

// Refuse records a refused request (path, input, reason) in the error log and
// the daemon's log. The filesystem calls it for the refusals it decides
// itself (read-only files, mkdir, rename...).
func (m *Manager) Refuse(c Caller, path, input string, err error) {
	e := AsError(err)
	m.errors.Add(1)
	ent := boundEntry(ErrorEntry{Time: time.Now(), Caller: c, Path: path, Input: input, Errno: e.Errno, Reason: e.Reason})
	m.mu.Lock()
	m.appendErrorLocked(ent)
	m.mu.Unlock()
	m.log.Info("refused", "uid", c.Uid, "pid", c.Pid, "path", ent.Path, "input", truncate(ent.Input, errInputExcerpt), "input_bytes", ent.InputLen, "errno", errnoName(e.Errno), "reason", ent.Reason)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Errors returns the error log, oldest first: the last 1000 refusals, fewer
// if their excerpts exceed errorLogBytes in all (errlog.go).
func (m *Manager) Errors() []ErrorEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.errlog)
}
