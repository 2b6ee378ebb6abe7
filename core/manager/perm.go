package manager

import (
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Caller is who asks: the uid and pid of the process behind a FUSE request.
type Caller struct {
	Uid uint32
	Gid uint32
	Pid int // 0: unknown (not checked)
}

// Root is a caller with every permission and no process.
var Root = Caller{}

// checkTrace refuses what caller c may not trace: as root anything; else
// a file c may not read (as default_permissions would: its uid, gid and
// groups), a set-uid or set-gid file, or any file where Yama's
// ptrace_scope forbids c to ptrace (reach.go). Processes of other users
// that map the file are not refused: c's probe never reaches them
// (reach.go). Any caller is refused with EDEADLK when its own process maps
// the file: it could not be attached while it waits for its own write. (A
// file the daemon maps itself is refused earlier, by stageAdd:
// checkNotSelf.)
func (m *Manager) checkTrace(c Caller, path string, key rmap.InodeKey, st *unix.Stat_t) error {
	id := procfs.FileID(key)
	if c.Pid > 0 && procfs.PidMaps(c.Pid, id) {
		return errorf(syscall.EDEADLK, "the writing process (pid %d) maps %s itself and could not be traced while it waits for its own write: write from another program (for example: echo ... | tee .../probes)", c.Pid, path)
	}
	if c.Uid == 0 {
		return nil
	}
	if !mayRead(c, st) {
		return errorf(syscall.EACCES, "uid %d may not read %s (mode %#o, owner %d:%d): only a file it can read may be probed", c.Uid, path, st.Mode&0o7777, st.Uid, st.Gid)
	}
	if st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		return errorf(syscall.EPERM, "%s is set-uid or set-gid: only root may probe it", path)
	}
	return checkScope(c)
}

// visibleTo reports whether caller c may see process pid in status, events
// and errors: root sees every process, anyone else the processes all of
// whose uids are theirs.
func visibleTo(c Caller, pid int) bool {
	if c.Uid == 0 {
		return true
	}
	st, err := procfs.PidStatus(pid)
	return err == nil && st.AllUids(c.Uid)
}

// eventFilter returns an event filter that shows caller c only the events
// of processes visible to it, reading /proc/PID/status once per pid and
// caching the answer. Events of processes that are gone before their first
// event is read are hidden.
func eventFilter(c Caller) func(Event) bool {
	cache := map[int]bool{}
	return func(e Event) bool {
		ok, seen := cache[e.Pid]
		if !seen {
			ok = visibleTo(c, e.Pid)
			if len(cache) > 4096 {
				clear(cache)
			}
			cache[e.Pid] = ok
		}
		return ok
	}
}
