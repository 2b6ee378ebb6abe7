package proc

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Skipped processes: a process that maps a watched inode but is not traced
// by this world — traced by another tracer (strace, gdb, a second uprobefs),
// a child of this process, or one whose attach failed. Reasons are recorded
// where an attach is tried and refused: at Watch (watchAttach), at the exec
// or library open of a new process (heldOpen), and by the /proc rescan used
// without fanotify. Skipped does not trust the record alone: it scans /proc
// for the processes that map the inode now, so that a process that started
// later, or that no attach was ever tried on (the fork child of another
// tracer's tracee), is listed too, and one that exited, unmapped the file or
// is traced by us now is not.

// maxSkips bounds the reasons recorded for one inode: past it, those of
// processes that no longer map the inode are dropped, and if none is, the
// new reason is not recorded (Skipped still lists the process, with the
// reason it finds then).
const maxSkips = 1024

// recordSkip records why pid, which maps the watched inode k or is about to
// (held in its exec or open), is not traced; a later reason of the same pid
// replaces the earlier one. Safe on any goroutine; callers check on the
// tracer thread that k is watched (Unwatch drops the inode's record).
func (w *World) recordSkip(k rmap.InodeKey, pid int, reason string) {
	w.skipMu.Lock()
	defer w.skipMu.Unlock()
	m := w.skips[k]
	if m == nil {
		m = map[int]string{}
		w.skips[k] = m
	}
	if _, ok := m[pid]; !ok && len(m) >= maxSkips {
		for p := range m {
			if !procfs.PidMaps(p, procfs.FileID(k)) {
				delete(m, p)
			}
		}
		if len(m) >= maxSkips {
			return
		}
	}
	m[pid] = reason
}

// Skipped returns, sorted by pid, the processes that map in now and are not
// traced by this world, each with the reason: why it cannot be attached now
// (checkAttachable: another tracer, our own child...), else the reason
// recorded when an attach of it failed, else "not traced". A process being
// attached (held in its exec), or one the inode's filter leaves out
// (SetFilter), is not listed. It reads /proc: every
// process's maps.
func (w *World) Skipped(in *rmap.Inode) []Skip {
	w.skipMu.Lock()
	rec := maps.Clone(w.skips[in.Key])
	w.skipMu.Unlock()
	pids, err := pidsMapping(in.Key)
	if err != nil {
		// No scan: the recorded ones that still map in.
		for pid := range rec {
			if procfs.PidMaps(pid, procfs.FileID(in.Key)) {
				pids = append(pids, pid)
			}
		}
	}
	slices.Sort(pids)
	var filter func(int) bool
	w.t.do(func() { filter = w.filters[in.Key] })
	var out []Skip
	for _, pid := range pids {
		st, err := procfs.PidStatus(pid)
		if err != nil || st.TracerPid == w.t.tid {
			continue // gone, or ours
		}
		if filter != nil && !filter(pid) {
			continue // not traced on purpose: the file's filter leaves it out
		}
		reason := "not traced"
		if err := w.checkAttachable(pid); err != nil {
			reason = err.Error()
		} else if r, ok := rec[pid]; ok {
			reason = r
		}
		out = append(out, Skip{Pid: pid, Reason: reason})
	}
	return out
}

// tracerName describes the tracer thread tid for a reason: "pid TID
// (COMM)", or "pid TID" if its name cannot be read.
func tracerName(tid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/comm")
	if err != nil {
		return "pid " + strconv.Itoa(tid)
	}
	return fmt.Sprintf("pid %d (%s)", tid, strings.TrimSpace(string(b)))
}
