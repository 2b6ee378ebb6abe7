package manager

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Reach: which processes a probe reaches (the --allow-other rules). A
// root caller's probe reaches every process that maps the file. A probe of
// any other caller reaches only the processes that caller could ptrace
// itself: every uid of the process is the caller's (so no set-id program
// and no other user's process), and Yama's ptrace_scope lets a user trace
// at all. That holds for the breakpoints and the attach (the world is told
// which processes the file's probes reach: those of no owner are never
// attached for them) and for the counts (a consumer filter: a hit in a
// process of another user, traced for another owner's probe on the same
// file, is not this probe's).

// ptraceScope is Yama's kernel.yama.ptrace_scope (0 without Yama); a
// variable for tests.
var ptraceScope = readPtraceScope

func readPtraceScope() int {
	b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// checkScope refuses a non-root caller where Yama forbids a user to
// ptrace processes it did not start (scope 1: only descendants, which the
// daemon cannot tell for the caller; 2: admin only; 3: none).
func checkScope(c Caller) error {
	if c.Uid == 0 {
		return nil
	}
	if s := ptraceScope(); s > 0 {
		return errorf(syscall.EPERM, "kernel.yama.ptrace_scope is %d: uid %d could not ptrace the processes itself, so uprobefs does not for it (only root may probe)", s, c.Uid)
	}
	return nil
}

// mayTrace reports whether non-root uid could ptrace process pid: all its
// uids are uid.
func mayTrace(uid uint32, pid int) bool {
	st, err := procfs.PidStatus(pid)
	return err == nil && st.AllUids(uid)
}

// reachOf returns the consumer filter of uid's probes: the processes uid
// may trace, decided at a pid's first hit (a cache of at most 4096 pids).
func reachOf(uid uint32) func(pid int) bool {
	var mu sync.Mutex
	cache := map[int]bool{}
	return func(pid int) bool {
		mu.Lock()
		v, ok := cache[pid]
		mu.Unlock()
		if ok {
			return v
		}
		v = mayTrace(uid, pid)
		mu.Lock()
		if len(cache) >= 4096 {
			clear(cache)
		}
		cache[pid] = v
		mu.Unlock()
		return v
	}
}

// owners is who owns the probes of a file: root among them, or the uids.
// Immutable; a file holds the current one.
type owners struct {
	root bool
	uids []uint32
}

// has reports whether o reaches at least what uid's probe would.
func (o *owners) has(uid uint32) bool {
	if o == nil {
		return false
	}
	if o.root {
		return true
	}
	for _, u := range o.uids {
		if u == uid {
			return true
		}
	}
	return false
}

func (o *owners) with(uid uint32) *owners {
	if o.has(uid) {
		return o
	}
	n := &owners{}
	if o != nil {
		n.root, n.uids = o.root, append([]uint32(nil), o.uids...)
	}
	if uid == 0 {
		n.root = true
	} else {
		n.uids = append(n.uids, uid)
	}
	return n
}

// ownerSet holds a file's owners for the world's predicate (read on the
// tracer thread, changed under the file's lock).
type ownerSet struct{ p atomic.Pointer[owners] }

// reaches reports whether some probe of the file reaches pid.
func (s *ownerSet) reaches(pid int) bool {
	o := s.p.Load()
	if o == nil || o.root {
		return true
	}
	for _, uid := range o.uids {
		if mayTrace(uid, pid) {
			return true
		}
	}
	return false
}

// predicate is what the world is given for file f: its process filter
// (pid=, comm=) and the reach of its owners, read when the world asks (a
// change of owners applies from the next time a process's mappings are
// read; widen rescans for one that reaches more).
func (f *file) predicate() func(pid int) bool {
	filt := f.filter
	return func(pid int) bool {
		return (filt == nil || filt.selects(pid)) && f.owners.reaches(pid)
	}
}

// consumerFor returns the engine consumer of p, filtered to the processes
// p's owner may trace.
func consumerFor(p *Probe, ring *EventRing, handler func(*probes.Uprobe, probes.Hit)) *probes.Consumer {
	c := &probes.Consumer{Name: p.Name, Handler: handler, WantRegs: len(p.Args) > 0}
	switch {
	case p.Return && len(p.goRets) > 0: // the entry of a Go return probe (goret.go)
		c.Handler, c.WantRegs = p.goEntryHandler(), true
	case p.Return:
		c.Handler, c.WantRegs, c.RetHandler = nil, false, p.retHandler(ring)
	}
	if p.Owner != 0 {
		c.Filter = reachOf(p.Owner)
	}
	return c
}

// mayRead reports whether caller c may read a file of stat st.
func mayRead(c Caller, st *unix.Stat_t) bool { return MayAccess(c, st, 4) }

// MayAccess reports whether caller c has the access want (4 read, 2
// write, 1 search/execute, or-ed) to a file of stat st, as the kernel's
// permission check (default_permissions) would for c's uid, gid and
// groups. Root may do anything.
func MayAccess(c Caller, st *unix.Stat_t, want uint32) bool {
	if c.Uid == 0 {
		return true
	}
	mode := st.Mode
	switch {
	case st.Uid == c.Uid:
		mode >>= 6
	case c.inGroup(st.Gid):
		mode >>= 3
	}
	return mode&want == want
}

// inGroup reports whether gid is c's group or one of its supplementary
// groups (the Groups line of its process's status).
func (c Caller) inGroup(gid uint32) bool {
	if c.Gid == gid {
		return true
	}
	if c.Pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(c.Pid) + "/status")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Groups:"); ok {
			for _, g := range strings.Fields(v) {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil && uint32(n) == gid {
					return true
				}
			}
		}
	}
	return false
}
