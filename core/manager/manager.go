package manager

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/fetch"
	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
)

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
	// Args are its fetch arguments (args.go); none for most probes.
	Args []fetch.Arg
	// Return: a return probe (ret.go); hist holds its durations. In a Go
	// program (goret.go), goRets are its return instructions, retHits its
	// count and pairs the entries waiting for their return.
	Return   bool
	hist     *fetch.Hist
	goRets   []goRet
	retHits  atomic.Uint64
	pairs    goPairs
	entryOff uint64 // the entry uprobe's offset if not Offset (goret.go)
	goMode   bool   // goRets of a Go program (else of a C++ one)

	plan     *install.Plan
	consumer *probes.Consumer
	events   *EventRing
	// mode says how its sites are hit, for the listing (counts.go); nil
	// in a world that does not tell.
	mode func() string
}

// Hits returns how often the probe was hit.
func (p *Probe) Hits() uint64 {
	if len(p.goRets) > 0 {
		return p.retHits.Load()
	}
	return p.consumer.Hits()
}

// Subscribe opens a stream of the probe's events for caller c: every hit from
// now on (see EventRing). A caller other than root sees only the events of
// its own processes (see visibleTo). End it with Close.
func (p *Probe) Subscribe(c Caller) *Subscription {
	var filter func(Event) bool
	if c.Uid != 0 {
		filter = eventFilter(c)
	}
	return p.events.Subscribe(filter)
}

// ListingLine is a probe's line in a binary's probes file (name and location
// escaped by EscapeField):
//
//	NAME LOCATION 0xOFFSET HITS [MODE]
//
// MODE, in a world with jump sites (WorldJumps), says how the probe's
// installed sites are hit: jump (all of them jump sites), trap (none),
// mixed, or - (none installed).
func (p *Probe) ListingLine() string {
	mode := ""
	if p.mode != nil {
		mode = " " + p.mode()
	}
	return fmt.Sprintf("%s %s %#x %d%s\n", EscapeField(p.Name), EscapeField(p.Location), p.Offset, p.Hits(), mode)
}

// ControlLine is a probe's line in the control directory's probes file (the
// path escaped by EscapeField, like /proc/mounts):
//
//	PATH NAME LOCATION 0xOFFSET HITS
func (p *Probe) ControlLine() string {
	return EscapeField(p.Path) + " " + p.ListingLine()
}

// file is the probes of one inode.
type file struct {
	key rmap.InodeKey
	in  *rmap.Inode
	// probes by name. probes is protected by Manager.mu for reading and
	// writing, and changed only with the file's lock held as well.
	probes  map[string]*Probe
	watched bool     // protected by the file's lock (filelock.go)
	filter  *Filter  // the probes' process filter (filter.go); protected by the file's lock
	owners  ownerSet // who owns its probes (reach.go)
}

// Manager holds the named probes of every file and drives the Engine and the
// World. It is safe for concurrent use. See the lock order in the package doc.
type Manager struct {
	eng    *probes.Engine // immutable
	inodes *rmap.Inodes   // immutable
	world  World          // immutable
	log    *slog.Logger   // immutable
	// maxProbes is the probe limit (MaxProbes; tests lower it). maxProbes
	// is immutable after NewManager.
	maxProbes int
	// rings is the budget of the probes' event rings. rings is immutable
	// (a *ringBudget is safe for concurrent use).
	rings *ringBudget

	// applyMu is held for reading by every change (ApplyAs, ApplyInode,
	// Remove), with the file's lock (filelock.go), and for writing by
	// Close.
	applyMu sync.RWMutex

	// mu protects files, fileLocks, pending, errlog, errlogBytes, closed.
	mu        sync.Mutex
	files     map[rmap.InodeKey]*file
	fileLocks map[rmap.InodeKey]*fileLock
	pending   int          // probes reserved by changes under way (filelock.go)
	errlog    []ErrorEntry // the last errorLogSize refusals, oldest first (errlog.go)
	// errlogBytes is the size of errlog's entries (ErrorEntry.size).
	errlogBytes int
	closed      bool

	nextID atomic.Uint64
	errors atomic.Uint64 // refused requests. errors is accessed atomically.
}

// NewManager returns a Manager registering into eng, with inode identities
// from inodes (the registry the world uses too), processes from w. log may be
// nil (discard).
func NewManager(eng *probes.Engine, inodes *rmap.Inodes, w World, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{eng: eng, inodes: inodes, world: w, log: log, maxProbes: MaxProbes, rings: newRingBudget(ringBudgetEvents), files: map[rmap.InodeKey]*file{}}
}

// KeyOf returns the identity of the file at path (following symlinks).
func KeyOf(path string) (rmap.InodeKey, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return rmap.InodeKey{}, &Error{Errno: err.(syscall.Errno), Reason: fmt.Sprintf("%s: %v", path, err)}
	}
	return rmap.InodeKey{Dev: st.Dev, Ino: st.Ino}, nil
}

// openRegular opens the file at path once and returns it with its
// identity and stat taken from the open file (fstat), so that everything a
// registration does — analyse its instructions, mark it for new processes
// (through /proc/self/fd) — is about that one inode even if a package
// upgrade renames another file over path meanwhile. Errors are *Error:
// ENOENT, EISDIR for a directory, ENOEXEC for anything else that is not a
// regular file. The caller closes the file.
func openRegular(path string) (*os.File, rmap.InodeKey, *unix.Stat_t, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, rmap.InodeKey{}, nil, AsError(err)
	}
	key, st, err := statRegular(f, path)
	if err != nil {
		f.Close()
		return nil, rmap.InodeKey{}, nil, err
	}
	return f, key, st, nil
}

// statRegular returns the identity and stat of the open file f (named
// path), or an *Error: EISDIR for a directory, ENOEXEC for anything else
// that is not a regular file.
func statRegular(f *os.File, path string) (rmap.InodeKey, *unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
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
	return m.write(c, path, input, func(ops []Op) error { return m.ApplyAs(c, path, ops) })
}

// write checks the size of input (one write(2)), parses it and applies it
// with apply; a refusal is logged for where (the file's path) and returned
// as *Error.
func (m *Manager) write(c Caller, where string, input []byte, apply func([]Op) error) error {
	err := error(nil)
	if len(input) > MaxWrite {
		err = errorf(syscall.EINVAL, "write of %d bytes is too large: at most %d bytes in one write", len(input), MaxWrite)
	} else {
		var ops []Op
		if ops, err = ParseProbeLines(string(input)); err == nil {
			err = apply(ops)
		}
	}
	if err != nil {
		err = AsError(err)
		m.Refuse(c, where, string(input), err)
	}
	return err
}

// Apply applies ops to the file at path with root's permissions: all of them
// or, on error, none. See ApplyAs.
func (m *Manager) Apply(path string, ops []Op) error { return m.ApplyAs(Root, path, ops) }

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
// file, or the daemon maps it itself), ENOSPC (MaxProbes), ESHUTDOWN (closed), or what the world or engine
// returned.
func (m *Manager) ApplyAs(c Caller, path string, ops []Op) error {
	m.applyMu.RLock()
	defer m.applyMu.RUnlock()
	if err := m.checkOpen(); err != nil {
		return err
	}
	if len(ops) == 0 {
		return errorf(syscall.EINVAL, "nothing to do")
	}
	fd, key, st, err := openRegular(path)
	if err != nil {
		return err
	}
	defer m.lockFile(key)()
	b, err := m.stage(c, path, ops, fd, key, st)
	if err != nil {
		return err
	}
	defer b.close()
	if err := m.reserve(b); err != nil {
		return err
	}
	defer m.release(b)
	if len(b.adds) > 0 {
		if err := m.checkTrace(c, path, b.key, b.st); err != nil {
			return err
		}
	}
	if err := m.watch(b); err != nil {
		return err
	}
	if err := m.register(b); err != nil {
		return err
	}
	m.finish(b)
	return nil
}

// finish is the end of every batch, once its registrations are in: the
// removed probes go, the new set of probes is published, the log says it.
func (m *Manager) finish(b *batch) {
	m.unregisterRemoved(b)
	m.commit(b)
	m.logApplied(b)
}

// checkOpen refuses changes once Close has begun.
func (m *Manager) checkOpen() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errorf(syscall.ESHUTDOWN, "uprobefs is shutting down")
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

// Close unregisters every probe, ends every event stream, unwatches every
// inode and closes the world (which restores and detaches every process).
// Later changes fail with ESHUTDOWN. Close is idempotent.
func (m *Manager) Close() error {
	m.applyMu.Lock() // no change under way on any file
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
		// One engine batch a file: one walk of its processes for all
		// its probes (10,000 probes one by one took longer than a
		// shutdown may).
		var ps []*Probe
		var unregs []probes.Unregistration
		for _, p := range f.probes {
			m.unregisterGoRets(f.in, p)
			ps = append(ps, p)
			unregs = append(unregs, probes.Unregistration{Off: p.probeOff(), C: p.consumer})
		}
		if len(ps) > 0 {
			if err := m.eng.UnregisterMany(f.in, unregs); err != nil {
				errs = append(errs, fmt.Errorf("unregister the %d probes of %s: %w", len(ps), ps[0].Path, err))
			}
		}
		for _, p := range ps {
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
