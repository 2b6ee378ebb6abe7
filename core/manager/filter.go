package manager

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Process filters. A registration line may end with qualifiers that limit
// its probe to some processes, after the location and white space:
//
//	LOCATION pid=PID[,PID...]     the processes PID and their descendants
//	LOCATION comm=NAME[,NAME...]  the processes whose command name
//	                              (/proc/PID/comm, at most 15 bytes) is NAME
//	LOCATION pid=... comm=...     both must hold
//
// in every form of a registration ("x=tick pid=42", "p:x tick comm=srv",
// "alpha_* pid=42"). The breakpoints go only into the selected processes
// (a world that cannot do that refuses filters: EOPNOTSUPP): the others are
// not attached and run at full speed. A process is judged when it is
// attached (by the scan at the first registration on the file, at an exec
// or library open of the file) and at each exec; a fork child of a selected
// process is a descendant with its parent's command name, hence selected.
//
// The probes of one file share one filter (the world attaches per file):
// a filtered registration on a file whose probes have another filter (or
// none), or a batch mixing filters, is refused (EINVAL). Remove the file's
// probes first, in a separate write.

// MaxComm is the longest command name a comm= filter may give (the
// kernel's TASK_COMM_LEN less the NUL).
const MaxComm = 15

// Filter limits probes to processes: those whose pid is in Pids or
// descends from one of them, and (if Comms is not empty) whose command name
// is in Comms. Both empty: every process. Immutable once parsed.
type Filter struct {
	Pids    []int
	Comms   []string
	Cgroups []string // cgroup v2 paths ("/a/b"): the process is in one or below (cgroup.go)
}

// String is the filter as written in canonical form ("pid=12,40
// comm=srv"), or "" for none.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	var parts []string
	if len(f.Pids) > 0 {
		s := make([]string, len(f.Pids))
		for i, p := range f.Pids {
			s[i] = strconv.Itoa(p)
		}
		parts = append(parts, "pid="+strings.Join(s, ","))
	}
	if len(f.Comms) > 0 {
		parts = append(parts, "comm="+strings.Join(f.Comms, ","))
	}
	if len(f.Cgroups) > 0 {
		parts = append(parts, "cgroup="+strings.Join(f.Cgroups, ","))
	}
	return strings.Join(parts, " ")
}

// selects reports whether the process pid is selected, from /proc: its
// command name, and its ancestors through PPid. A process that cannot be
// read (gone) is not selected.
func (f *Filter) selects(pid int) bool {
	st, err := procfs.PidStatus(pid)
	if err != nil {
		return false
	}
	if len(f.Comms) > 0 && !slices.Contains(f.Comms, st.Name) {
		return false
	}
	if len(f.Cgroups) > 0 && !inCgroups(pid, f.Cgroups) {
		return false
	}
	if len(f.Pids) == 0 {
		return true
	}
	for range 1 << 16 { // pid chains end at pid 1 (PPid 0); bounded anyway
		if slices.Contains(f.Pids, pid) {
			return true
		}
		if st.PPid <= 0 {
			return false
		}
		pid = st.PPid
		if st, err = procfs.PidStatus(pid); err != nil {
			return false
		}
	}
	return false
}

// splitFilter cuts the filter qualifiers off the end of line: it returns
// the rest of the line and the filter (nil if there is none). A
// qualifier is a white-space separated word after at least one other word
// that starts with "pid=" or "comm=".
func splitFilter(line string) (string, *Filter, error) {
	var f *Filter
	rest := line
	for {
		trimmed := strings.TrimRight(rest, " \t")
		i := strings.LastIndexAny(trimmed, " \t")
		if i < 0 {
			break
		}
		word := trimmed[i+1:]
		kind, list, ok := strings.Cut(word, "=")
		if !ok || (kind != "pid" && kind != "comm" && kind != "cgroup") {
			break
		}
		if f == nil {
			f = &Filter{}
		}
		if err := f.add(kind, list); err != nil {
			return "", nil, fmt.Errorf("%q: %v", word, err)
		}
		rest = trimmed[:i]
	}
	return rest, f, nil
}

// add adds the list of a "kind=list" qualifier to f.
func (f *Filter) add(kind, list string) error {
	if list == "" {
		return fmt.Errorf("empty %s= filter", kind)
	}
	items := strings.Split(list, ",")
	switch kind {
	case "pid":
		if f.Pids != nil {
			return errors.New("pid= given twice (list several pids in one: pid=1,2)")
		}
		for _, s := range items {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 || s[0] == '+' {
				return fmt.Errorf("pid %q is not a positive decimal number", s)
			}
			f.Pids = append(f.Pids, n)
		}
	case "comm":
		if f.Comms != nil {
			return errors.New("comm= given twice (list several names in one: comm=a,b)")
		}
		for _, s := range items {
			switch {
			case s == "":
				return errors.New("empty command name")
			case len(s) > MaxComm:
				return fmt.Errorf("command name %q is longer than %d bytes (the kernel keeps at most %d in /proc/PID/comm)", s, MaxComm, MaxComm)
			}
			f.Comms = append(f.Comms, s)
		}
	case "cgroup":
		if f.Cgroups != nil {
			return errors.New("cgroup= given twice (list several in one: cgroup=/a,/b)")
		}
		for _, s := range items {
			cg, err := parseCgroup(s)
			if err != nil {
				return err
			}
			f.Cgroups = append(f.Cgroups, cg)
		}
	}
	return nil
}

// parseLineFilter is parseLineGlob with the filter qualifiers cut off
// first and put in Op.Filter.
func parseLineFilter(line string) (Op, error) {
	rest, f, err := splitFilter(line)
	if err != nil {
		return Op{}, fmt.Errorf("%q: %v", line, err)
	}
	op, err := parseLineGlob(rest)
	if err != nil || f == nil {
		return op, err
	}
	if op.Remove {
		return Op{}, fmt.Errorf("%q: a process filter (pid=, comm=, cgroup=) limits a registration; -NAME takes none", line)
	}
	op.Filter = f
	return op, nil
}

// WorldFilterer is implemented by worlds that can limit the breakpoints of
// an inode to some processes (core/proc.World). Optional: without it,
// filtered probes are refused.
type WorldFilterer interface {
	// SetFilter limits in's breakpoints to the processes selects
	// selects (nil: every process), from the next Watch of in until its
	// Unwatch.
	SetFilter(in *rmap.Inode, selects func(pid int) bool) error
}

// stageFilter checks that an added probe with filter f fits the file: the
// probes of one file share one filter.
func (b *batch) stageFilter(f *Filter) error {
	if !b.filterSet {
		b.filterSet = true
		if len(b.f.probes) > 0 { // published: the file's lock is held, so no lock
			b.filter, b.filterFixed = b.f.filter, true
		}
	}
	if !b.filterFixed && len(b.adds) == 0 {
		b.filter = f
		return nil
	}
	if have, want := b.filter.String(), f.String(); have != want {
		describe := func(s string) string {
			if s == "" {
				return "no process filter"
			}
			return "the process filter " + s
		}
		where := "the probes of this write have"
		if b.filterFixed {
			where = "its probes have"
		}
		return errorf(syscall.EINVAL, "%s: %s, and the probes of one file share one filter: %s %s (remove them first, in a separate write)", b.path, describe(want)+" differs", where, describe(have))
	}
	return nil
}

// setWorldFilter gives the world the file's filter before its Watch.
func (m *Manager) setWorldFilter(b *batch) error {
	wf, ok := m.world.(WorldFilterer)
	if !ok {
		if b.filter != nil {
			return errorf(syscall.EOPNOTSUPP, "%s: this world cannot limit probes to processes (pid=, comm=)", b.path)
		}
		return nil // (a world without filters: core/sim)
	}
	b.f.filter = b.filter
	if err := wf.SetFilter(b.f.in, b.f.predicate()); err != nil {
		b.f.filter = nil
		return err
	}
	return nil
}

// widen, for a batch adding probes to a watched file, makes the world
// reach the processes of a caller whose probes reach more than the file's
// did: the predicate again (its verdicts reset) and a new scan.
func (m *Manager) widen(b *batch) error {
	o := b.f.owners.p.Load()
	if o.has(b.caller.Uid) {
		return nil
	}
	b.f.owners.p.Store(o.with(b.caller.Uid))
	wf, ok := m.world.(WorldFilterer)
	if !ok {
		return nil
	}
	if err := wf.SetFilter(b.f.in, b.f.predicate()); err != nil {
		return err
	}
	if r, ok := m.world.(WorldRescanner); ok {
		return r.Rescan(b.f.in, b.watchPath())
	}
	return nil
}

// WorldRescanner is implemented by worlds that can look again for the
// processes of a watched inode (after a filter that selects more).
type WorldRescanner interface {
	Rescan(in *rmap.Inode, path string) error
}
