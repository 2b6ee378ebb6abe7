package probes

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// The Manager is the facade the filesystem (package fs) uses: it turns
// "write this line into the probes file of that path" into Engine.Register
// and Engine.Unregister calls, keeps the named probes of every file, their
// event streams, and a log of refused requests.
//
// Lock order (outermost first):
//
//	Manager.applyMu            serialises every change (Apply, Remove, Close)
//	  -> World.Watch/Unwatch, Engine.Register/Unregister (and their locks:
//	     i_mutex -> mmap_sem -> i_mmap_mutex -> uprobes_mmap_mutex -> treelock)
//	Manager.mu                 a leaf: held only to read or swap the maps
//	EventRing.mu               a leaf, taken on the hit path by Push
//
// Manager.mu is never held across a call into the Engine or the World, so a
// slow registration (attaching many processes) never blocks readers of hits,
// status or the listings.

// World is what the Manager needs from the world under the engine (the real
// ptrace world of core/proc, or a simulated one).
type World interface {
	// Watch makes the world find every process that maps in (and every
	// process that maps it later) and feed its VMAs to the engine. The
	// Manager calls it before the first Register on in.
	Watch(in *rmap.Inode, path string) error
	// Unwatch is called after the last Unregister on in.
	Unwatch(in *rmap.Inode)
	// Close restores and detaches everything.
	Close() error
}

// Skip is a process that maps a watched inode but is not traced, and why.
type Skip struct {
	Pid    int
	Reason string
}

// WorldStats are the world's counters, shown in the control directory.
type WorldStats struct {
	Processes, Threads, Breakpoints, Hits, Errors int
}

// WorldSkipper is implemented by worlds that can tell which processes that
// map an inode they could not trace. Optional.
type WorldSkipper interface {
	Skipped(in *rmap.Inode) []Skip
}

// WorldStatser is implemented by worlds that keep statistics. Optional.
type WorldStatser interface {
	Stats() WorldStats
}

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

// installErrno maps the errors of install.Open, Resolve and Analyze.
func installError(err error) *Error {
	switch {
	case errors.Is(err, install.ErrNotELF), errors.Is(err, install.ErrNotX86_64):
		return &Error{Errno: syscall.ENOEXEC, Reason: err.Error()}
	case errors.Is(err, install.ErrNoSymbol):
		return &Error{Errno: syscall.ENOENT, Reason: err.Error()}
	case errors.Is(err, install.ErrSyntax), errors.Is(err, install.ErrNotExecutable),
		errors.Is(err, install.ErrPastSymbol), errors.Is(err, install.ErrNotBoundary),
		errors.Is(err, install.ErrRefused):
		return &Error{Errno: syscall.EINVAL, Reason: err.Error()}
	}
	return AsError(err)
}

// Caller is who asks: the uid and pid of the process behind a FUSE request.
type Caller struct {
	Uid uint32
	Pid int // 0: unknown (not checked)
}

// Root is a caller with every permission and no process.
var Root = Caller{}

// Limits.
const (
	// MaxWrite is the largest write(2) the probes file accepts (one batch).
	MaxWrite = 64 << 10
	// MaxLine is the longest line of a probes file write.
	MaxLine = 4096
	// MaxName is the longest probe name (a directory name).
	MaxName = 255
	// MaxProbes is the most probes one Manager holds.
	MaxProbes = 10000
	// errorLogSize is the number of refused requests the error log keeps.
	errorLogSize = 1000
)

// Op is one parsed line of a probes file write: register Location under Name
// (Name "" means the canonical location), or, if Remove, unregister Name.
type Op struct {
	Remove   bool
	Name     string
	Location string
}

// ParseProbeLines parses what was written into a probes file. One probe a
// line, in one of these forms (blank lines and lines starting with '#' are
// ignored; spaces and tabs around a line and a trailing "\r" are ignored):
//
//	OFFSET              file offset, hex (0x4a0) or decimal (1184)
//	SYMBOL              a function symbol of .symtab or .dynsym
//	SYMBOL+OFF          OFF bytes into it (hex or decimal)
//	NAME=LOCATION       LOCATION (one of the above) under the name NAME
//	p:NAME LOCATION     the same, tracefs style; "p LOCATION" has no name
//	-NAME, -:NAME       unregister the probe NAME
//
// A name is 1 to 255 bytes without '/', '=', white space or control
// characters, does not start with '-', and is not ".", ".." or "probes".
// Errors are *Error with EINVAL naming the line: NUL bytes, lines longer than
// MaxLine, unknown forms (r: return probes, fetch arguments, PATH:OFFSET),
// bad names, and input without any line (empty write).
func ParseProbeLines(text string) ([]Op, error) {
	if strings.IndexByte(text, 0) >= 0 {
		return nil, errorf(syscall.EINVAL, "NUL byte in input")
	}
	var ops []Op
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		if len(line) > MaxLine {
			return nil, errorf(syscall.EINVAL, "line %d: too long (%d bytes, at most %d)", n, len(line), MaxLine)
		}
		line = strings.TrimSuffix(line, "\r")
		line = strings.Trim(line, " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		op, err := parseLine(line)
		if err != nil {
			return nil, errorf(syscall.EINVAL, "line %d: %s", n, err)
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 {
		return nil, errorf(syscall.EINVAL, "empty write: no probe in the input (write OFFSET, SYMBOL, SYMBOL+OFF, NAME=LOCATION, p:NAME LOCATION or -NAME)")
	}
	return ops, nil
}

func parseLine(line string) (Op, error) {
	for i := 0; i < len(line); i++ {
		if c := line[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return Op{}, fmt.Errorf("control character %q", c)
		}
	}
	switch {
	case strings.HasPrefix(line, "-"):
		name := strings.TrimPrefix(strings.TrimPrefix(line, "-"), ":")
		if err := checkName(name); err != nil {
			return Op{}, fmt.Errorf("%q: %v", line, err)
		}
		return Op{Remove: true, Name: name}, nil
	case strings.HasPrefix(line, "r:") || strings.HasPrefix(line, "r ") || strings.HasPrefix(line, "r\t"):
		return Op{}, fmt.Errorf("%q: return probes (r:) are not supported", line)
	case strings.HasPrefix(line, "p:") || ((strings.HasPrefix(line, "p ") || strings.HasPrefix(line, "p\t")) && len(strings.Fields(line)) >= 2):
		f := strings.Fields(line)
		if len(f) < 2 {
			return Op{}, fmt.Errorf("%q: want p:NAME LOCATION", line)
		}
		if len(f) > 2 {
			return Op{}, fmt.Errorf("%q: fetch arguments are not supported (want p:NAME LOCATION)", line)
		}
		name := strings.TrimPrefix(strings.TrimPrefix(f[0], "p"), ":")
		if name != "" {
			if err := checkName(name); err != nil {
				return Op{}, fmt.Errorf("%q: %v", line, err)
			}
		}
		if err := checkLocation(f[1]); err != nil {
			return Op{}, fmt.Errorf("%q: %v", line, err)
		}
		return Op{Name: name, Location: f[1]}, nil
	}
	if name, loc, ok := strings.Cut(line, "="); ok {
		name, loc = strings.Trim(name, " \t"), strings.Trim(loc, " \t")
		if err := checkName(name); err != nil {
			return Op{}, fmt.Errorf("%q: %v", line, err)
		}
		if err := checkLocation(loc); err != nil {
			return Op{}, fmt.Errorf("%q: %v", line, err)
		}
		return Op{Name: name, Location: loc}, nil
	}
	if err := checkLocation(line); err != nil {
		return Op{}, fmt.Errorf("%q: %v", line, err)
	}
	return Op{Location: line}, nil
}

func checkLocation(loc string) error {
	switch {
	case loc == "":
		return errors.New("missing location")
	case strings.ContainsAny(loc, " \t"):
		return errors.New("unexpected text after the location")
	case strings.Contains(loc, "="):
		return errors.New("more than one '='")
	case strings.Contains(loc, ":") || strings.Contains(loc, "/"):
		return errors.New("a location is an offset or a symbol of this file (no PATH: part, the path is the file you write to)")
	case strings.HasPrefix(loc, "-"):
		return errors.New("negative offset")
	}
	return nil
}

// checkName reports why name cannot be a probe name, or nil.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("empty probe name")
	case len(name) > MaxName:
		return fmt.Errorf("probe name longer than %d bytes", MaxName)
	case name == "." || name == ".." || name == "probes":
		return fmt.Errorf("%q is reserved and cannot be a probe name", name)
	case name[0] == '-':
		return errors.New("a probe name cannot start with '-'")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c == 0x7f || c == '/' || c == '=' {
			return fmt.Errorf("probe name %q contains %q", name, c)
		}
	}
	return nil
}

// canonicalLocation is the default name of a probe at loc (as written, which
// install.Resolve accepted): offsets become lowercase hex ("1184" ->
// "0x4a0"), "sym+0" becomes "sym", "sym+16" becomes "sym+0x10".
func canonicalLocation(loc string) string {
	if loc != "" && loc[0] >= '0' && loc[0] <= '9' {
		if n, ok := install.ParseNumber(loc); ok {
			return "0x" + strconv.FormatUint(n, 16)
		}
		return loc
	}
	if i := strings.LastIndexByte(loc, '+'); i >= 0 {
		if n, ok := install.ParseNumber(loc[i+1:]); ok {
			if n == 0 {
				return loc[:i]
			}
			return loc[:i] + "+0x" + strconv.FormatUint(n, 16)
		}
	}
	return loc
}

// Probe is one named probe: a consumer of the uprobe at (inode, Offset).
// All fields are immutable.
type Probe struct {
	ID       uint64 // unique for the Manager's life; a re-registered name gets a new one
	Key      rmap.InodeKey
	Path     string // the path it was registered through
	Name     string
	Location string // canonical location as written ("main", "main+0x4", "0x1139")
	Offset   uint64 // file offset
	Owner    uint32 // uid of the caller that registered it
	Created  time.Time

	consumer *Consumer
	events   *EventRing
}

// Hits returns how often the probe was hit.
func (p *Probe) Hits() uint64 { return p.consumer.Hits() }

// Subscribe opens a stream of the probe's events for caller c: every hit from
// now on (see EventRing). A caller other than root sees only the events of
// processes all of whose uids are its uid. End it with Close.
func (p *Probe) Subscribe(c Caller) *Subscription {
	var filter func(Event) bool
	if c.Uid != 0 {
		filter = uidFilter(c.Uid)
	}
	return p.events.Subscribe(filter)
}

// file is the probes of one inode.
type file struct {
	key rmap.InodeKey
	in  *rmap.Inode
	// probes by name. probes is protected by Manager.mu for reading and
	// writing, and changed only with Manager.applyMu held as well.
	probes  map[string]*Probe
	watched bool // protected by applyMu
}

// ErrorEntry is one refused request of the error log.
type ErrorEntry struct {
	Time   time.Time
	Caller Caller
	Path   string
	Input  string
	Errno  syscall.Errno
	Reason string
}

// Line formats the entry as one line of the control directory's errors file:
//
//	2025-12-01T22:53:00.123Z uid=0 pid=42 EINVAL path=/tmp/x/demo input="bogus!" reason: line 1: ...
func (e ErrorEntry) Line() string {
	in := e.Input
	if len(in) > 160 {
		in = in[:160] + fmt.Sprintf("...(%d bytes)", len(e.Input))
	}
	return fmt.Sprintf("%s uid=%d pid=%d %s path=%s input=%q reason: %s\n",
		e.Time.UTC().Format("2006-01-02T15:04:05.000Z"), e.Caller.Uid, e.Caller.Pid,
		errnoName(e.Errno), escapePath(e.Path), in, e.Reason)
}

func errnoName(e syscall.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return "errno" + strconv.Itoa(int(e))
}

// escapePath escapes white space and backslashes like /proc/mounts (\040).
func escapePath(p string) string {
	if !strings.ContainsAny(p, " \t\n\\") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, "\\%03o", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Stats are the Manager's counters and, if the world keeps them, the world's.
type Stats struct {
	Files      int    // files with probes
	Probes     int    // named probes
	Hits       uint64 // sum of the probes' hits
	Errors     uint64 // refused requests
	EventsLost uint64 // events readers lost (ring overwritten)
	Readers    int    // open events files
	World      *WorldStats
}

// Manager holds the named probes of every file and drives the Engine and the
// World. It is safe for concurrent use. See the lock order above.
type Manager struct {
	eng    *Engine      // immutable
	inodes *rmap.Inodes // immutable
	world  World        // immutable
	log    *slog.Logger // immutable

	// applyMu serialises Apply, Remove and Close.
	applyMu sync.Mutex

	// mu protects files, byID, errlog, closed.
	mu     sync.Mutex
	files  map[rmap.InodeKey]*file
	errlog []ErrorEntry // ring of the last errorLogSize refusals, oldest first
	closed bool

	nextID atomic.Uint64
	errors atomic.Uint64 // refused requests. errors is accessed atomically.
}

// NewManager returns a Manager registering into eng, with inode identities
// from inodes (the registry the world uses too), processes from w. log may be
// nil (discard).
func NewManager(eng *Engine, inodes *rmap.Inodes, w World, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{eng: eng, inodes: inodes, world: w, log: log, files: map[rmap.InodeKey]*file{}}
}

// KeyOf returns the identity of the file at path (following symlinks).
func KeyOf(path string) (rmap.InodeKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return rmap.InodeKey{}, &Error{Errno: err.(syscall.Errno), Reason: fmt.Sprintf("%s: %v", path, err)}
	}
	return rmap.InodeKey{Dev: st.Dev, Ino: st.Ino}, nil
}

// statRegular returns the identity and stat of the regular file at path, or
// an *Error: ENOENT, EISDIR for a directory, ENOEXEC for anything else that is
// not a regular file.
func statRegular(path string) (rmap.InodeKey, *unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return rmap.InodeKey{}, nil, &Error{Errno: err.(syscall.Errno), Reason: fmt.Sprintf("%s: %v", path, err)}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		return rmap.InodeKey{}, nil, errorf(syscall.EISDIR, "%s is a directory: only regular files (ELF executables and libraries) have probes", path)
	default:
		return rmap.InodeKey{}, nil, errorf(syscall.ENOEXEC, "%s is not a regular file", path)
	}
	return rmap.InodeKey{Dev: st.Dev, Ino: st.Ino}, &st, nil
}

// Write parses input (the data of one write(2) into the probes file of path)
// and applies it for caller c, all or nothing. A refusal is logged in the
// error log and returned as *Error.
func (m *Manager) Write(c Caller, path string, input []byte) error {
	if len(input) > MaxWrite {
		err := errorf(syscall.EINVAL, "write of %d bytes is too large: at most %d bytes in one write", len(input), MaxWrite)
		m.Refuse(c, path, string(input), err)
		return err
	}
	ops, err := ParseProbeLines(string(input))
	if err == nil {
		err = m.ApplyAs(c, path, ops)
	}
	if err != nil {
		err = AsError(err)
		m.Refuse(c, path, string(input), err)
		return err
	}
	return nil
}

// Refuse records a refused request (path, input, reason) in the error log and
// the daemon's log. The filesystem calls it for the refusals it decides
// itself (read-only files, mkdir, rename...).
func (m *Manager) Refuse(c Caller, path, input string, err error) {
	e := AsError(err)
	m.errors.Add(1)
	ent := ErrorEntry{Time: time.Now(), Caller: c, Path: path, Input: input, Errno: e.Errno, Reason: e.Reason}
	m.mu.Lock()
	if len(m.errlog) >= errorLogSize {
		m.errlog = slices.Delete(m.errlog, 0, len(m.errlog)-errorLogSize+1)
	}
	m.errlog = append(m.errlog, ent)
	m.mu.Unlock()
	m.log.Info("refused", "uid", c.Uid, "pid", c.Pid, "path", path, "input", truncate(input, 160), "errno", errnoName(e.Errno), "reason", e.Reason)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Errors returns the error log, oldest first (the last 1000 refusals).
func (m *Manager) Errors() []ErrorEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.errlog)
}

// Apply applies ops to the file at path with root's permissions: all of them
// or, on error, none. See ApplyAs.
func (m *Manager) Apply(path string, ops []Op) error { return m.ApplyAs(Root, path, ops) }

type addPlan struct {
	name, loc string
	off       uint64
	plan      *install.Plan
	probe     *Probe
}

// ApplyAs applies ops to the file at path (symlinks followed; its identity
// is its inode) for caller c, all or nothing: every op is checked first
// (location, instruction, names, permissions) and registrations done before a
// failing one are rolled back. Ops apply in order, so "-a" then "a=main" in
// one batch replaces a.
//
// Errors (*Error): EINVAL (bad location or instruction), ENOENT (no such
// file, symbol or probe name), EEXIST (a probe of that name exists on the
// file), EISDIR, ENOEXEC (not an x86-64 ELF file), EPERM (c may not trace a
// process that maps the file, or may not remove another user's probe, or the
// file is set-uid/set-gid), EDEADLK (the caller's own process maps the
// file), ENOSPC (MaxProbes), ESHUTDOWN (closed), or what the world or engine
// returned.
func (m *Manager) ApplyAs(c Caller, path string, ops []Op) error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return errorf(syscall.ESHUTDOWN, "uprobefs is shutting down")
	}
	if len(ops) == 0 {
		return errorf(syscall.EINVAL, "nothing to do")
	}
	key, st, err := statRegular(path)
	if err != nil {
		return err
	}

	m.mu.Lock()
	f := m.files[key]
	staged := map[string]*Probe{}
	total := 0
	for _, fl := range m.files {
		total += len(fl.probes)
	}
	if f != nil {
		maps.Copy(staged, f.probes)
	}
	m.mu.Unlock()

	// Check everything.
	var adds []*addPlan
	var removes []*Probe
	var elf *install.File
	defer func() {
		if elf != nil {
			elf.Close()
		}
	}()
	for _, op := range ops {
		if op.Remove {
			p := staged[op.Name]
			if p == nil {
				return errorf(syscall.ENOENT, "no probe %q on %s", op.Name, path)
			}
			if c.Uid != 0 && p.Owner != c.Uid {
				return errorf(syscall.EPERM, "probe %q on %s belongs to uid %d", op.Name, path, p.Owner)
			}
			delete(staged, op.Name)
			if p.consumer != nil {
				removes = append(removes, p)
			} else {
				adds = slices.DeleteFunc(adds, func(a *addPlan) bool { return a.probe == p })
			}
			continue
		}
		if elf == nil {
			if elf, err = install.Open(path); err != nil {
				elf = nil
				return installError(err)
			}
		}
		off, err := elf.Resolve(op.Location)
		if err != nil {
			return installError(err)
		}
		plan, err := elf.Analyze(off)
		if err != nil {
			return installError(err)
		}
		loc := canonicalLocation(op.Location)
		name := op.Name
		if name == "" {
			name = loc
			if err := checkName(name); err != nil {
				return errorf(syscall.EINVAL, "%q cannot be a probe name (%v): give one with NAME=%s", name, err, op.Location)
			}
		}
		if staged[name] != nil {
			return errorf(syscall.EEXIST, "a probe named %q exists on %s (remove it with -%s, or choose another name with NAME=%s)", name, path, name, op.Location)
		}
		p := &Probe{Key: key, Path: path, Name: name, Location: loc, Offset: off, Owner: c.Uid}
		staged[name] = p
		adds = append(adds, &addPlan{name: name, loc: loc, off: off, plan: plan, probe: p})
	}
	if total-len(removes)+len(adds) > MaxProbes {
		return errorf(syscall.ENOSPC, "too many probes (at most %d)", MaxProbes)
	}
	if len(adds) > 0 {
		if err := m.checkTrace(c, path, key, st); err != nil {
			return err
		}
	}

	// Do it.
	in := m.inodes.Get(key)
	if f == nil {
		f = &file{key: key, in: in, probes: map[string]*Probe{}}
	}
	watchedNow := false
	if len(adds) > 0 && !f.watched {
		if err := m.world.Watch(in, path); err != nil {
			e := AsError(err)
			return &Error{Errno: e.Errno, Reason: fmt.Sprintf("%s: cannot watch the processes that map it: %s", path, e.Reason)}
		}
		f.watched, watchedNow = true, true
	}
	now := time.Now()
	for i, a := range adds {
		p := a.probe
		p.ID = m.nextID.Add(1)
		p.Created = now
		p.events = newEventRing()
		ring := p.events
		p.consumer = &Consumer{Name: p.Name, Handler: func(_ *Uprobe, h Hit) { ring.Push(h) }}
		if err := m.eng.Register(in, a.off, a.plan.Insn, a.plan, p.consumer); err != nil {
			for _, b := range adds[:i] {
				if uerr := m.eng.Unregister(in, b.off, b.probe.consumer); uerr != nil {
					m.log.Error("rollback: unregister failed", "path", path, "name", b.name, "err", uerr)
				}
			}
			if watchedNow {
				m.world.Unwatch(in)
				f.watched = false
			}
			e := AsError(err)
			return &Error{Errno: e.Errno, Reason: fmt.Sprintf("%s: registering %s at %#x: %s", path, a.name, a.off, e.Reason)}
		}
	}
	for _, p := range removes {
		if err := m.eng.Unregister(in, p.Offset, p.consumer); err != nil {
			m.log.Error("unregister failed", "path", path, "name", p.Name, "err", err)
		}
		p.events.Close()
	}

	m.mu.Lock()
	for _, p := range removes {
		if f.probes[p.Name] == p {
			delete(f.probes, p.Name)
		}
	}
	for _, a := range adds {
		f.probes[a.name] = a.probe
	}
	if len(f.probes) == 0 {
		delete(m.files, key)
	} else {
		m.files[key] = f
	}
	m.mu.Unlock()
	if len(f.probes) == 0 && f.watched {
		m.world.Unwatch(in)
		f.watched = false
	}
	for _, a := range adds {
		m.log.Info("registered", "path", path, "name", a.name, "location", a.loc, "offset", fmt.Sprintf("%#x", a.off), "insn", a.plan.Class, "uid", c.Uid)
	}
	for _, p := range removes {
		m.log.Info("unregistered", "path", path, "name", p.Name, "hits", p.Hits(), "uid", c.Uid)
	}
	return nil
}

// Remove unregisters the probe name of the file at path for caller c (rmdir),
// logging a refusal.
func (m *Manager) Remove(c Caller, path, name string) error {
	err := m.ApplyAs(c, path, []Op{{Remove: true, Name: name}})
	if err != nil {
		m.Refuse(c, path, "rmdir "+name, err)
	}
	return err
}

// checkTrace refuses what caller c may not trace: as root anything; else
// not a set-uid or set-gid file, and every process that maps the file now
// must have c's uid as all its uids (as ptrace requires). Any caller is
// refused with EDEADLK when its own process maps the file: it could not be
// attached while it waits for its own write.
func (m *Manager) checkTrace(c Caller, path string, key rmap.InodeKey, st *unix.Stat_t) error {
	if c.Pid > 0 {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(c.Pid) + "/maps"); err == nil && mapsHas(b, key) {
			return errorf(syscall.EDEADLK, "the writing process (pid %d) maps %s itself and could not be traced while it waits for its own write: write from another program (for example: echo ... | tee .../probes)", c.Pid, path)
		}
	}
	if c.Uid == 0 {
		return nil
	}
	if st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		return errorf(syscall.EPERM, "%s is set-uid or set-gid: only root may probe it", path)
	}
	pids, err := pidsMapping(key)
	if err != nil {
		return AsError(err)
	}
	for _, pid := range pids {
		uids, err := procUids(pid)
		if err != nil {
			continue // gone
		}
		if !allEqual(uids, c.Uid) {
			return errorf(syscall.EPERM, "process %d (uids %v) maps %s: uid %d may not trace it", pid, uids, path, c.Uid)
		}
	}
	return nil
}

// pidsMapping returns the processes whose /proc/PID/maps maps the inode key.
func pidsMapping(key rmap.InodeKey) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/maps")
		if err != nil {
			continue
		}
		if mapsHas(b, key) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// mapsHas reports whether the /proc/PID/maps text b maps the inode key.
func mapsHas(b []byte, key rmap.InodeKey) bool {
	ino := []byte(" " + strconv.FormatUint(key.Ino, 10) + " ")
	for line := range bytes.Lines(b) {
		if !bytes.Contains(line, ino) {
			continue
		}
		// start-end perms offset dev inode path
		f := bytes.Fields(line)
		if len(f) < 5 {
			continue
		}
		maj, min, ok := bytes.Cut(f[3], []byte(":"))
		if !ok {
			continue
		}
		ma, err1 := strconv.ParseUint(string(maj), 16, 32)
		mi, err2 := strconv.ParseUint(string(min), 16, 32)
		i, err3 := strconv.ParseUint(string(f[4]), 10, 64)
		if err1 == nil && err2 == nil && err3 == nil && i == key.Ino && unix.Mkdev(uint32(ma), uint32(mi)) == key.Dev {
			return true
		}
	}
	return false
}

// Probes returns the probes of the file key, sorted by name.
func (m *Manager) Probes(key rmap.InodeKey) []*Probe {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.files[key]
	if f == nil {
		return nil
	}
	ps := make([]*Probe, 0, len(f.probes))
	for _, p := range f.probes {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *Probe) int { return strings.Compare(a.Name, b.Name) })
	return ps
}

// Probe returns the probe name of the file key, or nil.
func (m *Manager) Probe(key rmap.InodeKey, name string) *Probe {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.files[key]; f != nil {
		return f.probes[name]
	}
	return nil
}

// All returns every probe, sorted by path, then name.
func (m *Manager) All() []*Probe {
	m.mu.Lock()
	var ps []*Probe
	for _, f := range m.files {
		for _, p := range f.probes {
			ps = append(ps, p)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(ps, func(a, b *Probe) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return ps
}

// ListingLine is a probe's line in a binary's probes file:
//
//	NAME LOCATION 0xOFFSET HITS
func (p *Probe) ListingLine() string {
	return fmt.Sprintf("%s %s %#x %d\n", p.Name, p.Location, p.Offset, p.Hits())
}

// ControlLine is a probe's line in the control directory's probes file (the
// path escaped like /proc/mounts):
//
//	PATH NAME LOCATION 0xOFFSET HITS
func (p *Probe) ControlLine() string {
	return escapePath(p.Path) + " " + p.ListingLine()
}

// Status returns the status lines of probe p as caller c may see them: one
// line per process that maps the file, "pid=P vaddr=0xV installed" where the
// engine has the breakpoint, "pid=P vaddr=0xV pending" where it maps the
// offset but the breakpoint is not (yet) in, and "pid=P skipped: REASON" for a
// process the world could not trace. A caller other than root sees only its
// own processes.
func (m *Manager) Status(p *Probe, c Caller) string {
	var b strings.Builder
	visible := func(pid int) bool {
		if c.Uid == 0 {
			return true
		}
		uids, err := procUids(pid)
		return err == nil && allEqual(uids, c.Uid)
	}
	in := m.inodes.Get(p.Key)
	for _, s := range m.sites(in, p.Offset) {
		if !visible(s.pid) {
			continue
		}
		state := "pending"
		if s.installed {
			state = "installed"
		}
		fmt.Fprintf(&b, "pid=%d vaddr=%#x %s\n", s.pid, s.vaddr, state)
	}
	if sk, ok := m.world.(WorldSkipper); ok {
		for _, s := range sk.Skipped(in) {
			if visible(s.Pid) {
				fmt.Fprintf(&b, "pid=%d skipped: %s\n", s.Pid, s.Reason)
			}
		}
	}
	return b.String()
}

type site struct {
	pid       int
	vaddr     uint64
	installed bool
}

// sites returns where the offset off of in is mapped in an executable VMA,
// by pid: the vaddr and whether the engine has its breakpoint there.
//
// It walks like the engine's register walk (Engine.walkVMAs): inside an srcu
// read section, a snapshot of the mapping under i_mmap_mutex, then each MM's
// mmap_sem for reading, skipping VMAs unmapped meanwhile. It holds no
// i_mutex, so it may run beside a registration and see it half done.
func (m *Manager) sites(in *rmap.Inode, off uint64) []site {
	idx := m.eng.srcu.ReadLock()
	defer m.eng.srcu.ReadUnlock(idx)
	var out []site
	for _, v := range in.AppendVMAs(nil, off) {
		if !v.Exec {
			continue
		}
		mm := v.MM
		mm.MmapSem.RLock()
		if v.LiveLocked() {
			vaddr, _ := v.VaddrOf(off)
			out = append(out, site{pid: mm.ID, vaddr: vaddr, installed: v.HasBreakpointLocked(off)})
		}
		mm.MmapSem.RUnlock()
	}
	slices.SortFunc(out, func(a, b site) int {
		if a.pid != b.pid {
			return cmp.Compare(a.pid, b.pid)
		}
		return cmp.Compare(a.vaddr, b.vaddr)
	})
	return out
}

// Stats returns the counters.
func (m *Manager) Stats() Stats {
	var s Stats
	m.mu.Lock()
	s.Files = len(m.files)
	var rings []*EventRing
	for _, f := range m.files {
		s.Probes += len(f.probes)
		for _, p := range f.probes {
			s.Hits += p.Hits()
			rings = append(rings, p.events)
		}
	}
	m.mu.Unlock()
	for _, r := range rings {
		s.EventsLost += r.Lost()
		s.Readers += int(r.subs.Load())
	}
	s.Errors = m.errors.Load()
	if ws, ok := m.world.(WorldStatser); ok {
		w := ws.Stats()
		s.World = &w
	}
	return s
}

// Text formats Stats as "key value" lines.
func (s Stats) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "files %d\nprobes %d\nhits %d\nerrors %d\nevent_readers %d\nevents_lost %d\n", s.Files, s.Probes, s.Hits, s.Errors, s.Readers, s.EventsLost)
	if w := s.World; w != nil {
		fmt.Fprintf(&b, "processes %d\nthreads %d\nbreakpoints %d\nworld_hits %d\nworld_errors %d\n", w.Processes, w.Threads, w.Breakpoints, w.Hits, w.Errors)
	}
	return b.String()
}

// Close unregisters every probe, ends every event stream, unwatches every
// inode and closes the world (which restores and detaches every process).
// Later changes fail with ESHUTDOWN. Close is idempotent.
func (m *Manager) Close() error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	files := m.files
	m.files = map[rmap.InodeKey]*file{}
	m.mu.Unlock()
	var errs []error
	for _, f := range files {
		for _, p := range f.probes {
			if err := m.eng.Unregister(f.in, p.Offset, p.consumer); err != nil {
				errs = append(errs, fmt.Errorf("unregister %s %s: %w", p.Path, p.Name, err))
			}
			p.events.Close()
			m.log.Info("unregistered", "path", p.Path, "name", p.Name, "hits", p.Hits())
		}
		if f.watched {
			m.world.Unwatch(f.in)
			f.watched = false
		}
	}
	if err := m.world.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
