// Package lockdep gives the engine's locks a class and checks, when enabled,
// that every goroutine takes them in the order of the lock hierarchy
// (core/probes' package doc draws it), and that it waits for nothing that
// could wait for a lock it holds:
//
//	tracer -> i_mutex -> srcu -> mmap_sem -> i_mmap_mutex -> uprobes_mmap_mutex -> treelock -> tracer poke
//
// A goroutine may acquire a lock of class C only while every lock it holds
// has a class strictly lower than C. Two locks of one class may nest only
// when the inner one is taken with an explicit, higher subclass
// (RWMutex.LockNested), as Linux's mmap_lock_nested does for fork, or when
// both are read sections of a class that allows it (srcu). TryLock is
// checked like Lock: a TryLock that succeeds out of order is a lock taken
// out of order, and a retry loop around it (core/proc's lockMM) would
// deadlock like Lock.
//
// Besides the locks there are waits, checked as an acquisition that is
// released at once (Wait):
//
//   - srcu: Synchronize waits for every reader that began before it, and a
//     reader (a register walk) takes mmap_sem inside its read section; so a
//     grace-period wait under mmap_sem (the seed's munmap_uprobe) is an
//     mmap_sem -> srcu inversion.
//   - tracer: a goroutine that asks core/proc's tracer thread to do
//     something waits for it, and the tracer takes mmap_sem (and, through
//     the engine's hooks, the locks below it) while it serves requests and
//     stops; so waiting for the tracer while holding any lock is reported.
//   - tracer poke: the one exception, the PTRACE_POKEDATA write of a
//     breakpoint by a walk that holds mmap_sem: the tracer serves those
//     holding no lock and taking none (Hold marks it), so waiting for one
//     is allowed under every lock, and any lock the tracer takes while it
//     serves one is reported.
//
// The checker is off by default: then a lock operation costs one atomic load
// more than the sync primitive it wraps. Tests turn it on with Enable (in
// TestMain). When on, it records, per goroutine (identified by the goroutine
// its g pointer, read by a few lines of assembly), the locks held and the site
// each was acquired at, and reports an out-of-order acquisition with both
// sites through the reporter (SetReporter; the default panics).
//
// It imports only the standard library (and a few lines of assembly for
// the goroutine identity): every lock-holding package may import it.
package lockdep

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// Class is a lock class of the hierarchy. Lower classes are taken first.
type Class int

// The classes of the seed's hierarchy, in order.
const (
	// None is not checked (the zero value).
	None Class = iota
	// Tracer is a wait for core/proc's tracer thread (Wait): it may take
	// every lock below, so nothing may be held while waiting for it.
	Tracer
	// IMutex is inode->i_mutex: serializes register/unregister on one inode.
	IMutex
	// SRCU is uprobes_srcu: read sections (ReadLock) nest; Synchronize is a
	// Wait of this class.
	SRCU
	// MmapSem is mm->mmap_sem.
	MmapSem
	// IMmapMutex is mapping->i_mmap_mutex: guards an inode's set of VMAs.
	IMmapMutex
	// UprobesMmapMutex is uprobes_mmap_mutex: serializes mmap_uprobe and
	// the deletion of a uprobe.
	UprobesMmapMutex
	// Treelock guards the uprobe tree.
	Treelock
	// TracerPoke is a wait for the tracer to write memory with
	// PTRACE_POKEDATA (core/proc's doPoke), allowed under every lock;
	// the tracer Holds it while serving, so it must take no lock then.
	TracerPoke
)

var classNames = [...]string{"none", "tracer", "i_mutex", "srcu", "mmap_sem", "i_mmap_mutex", "uprobes_mmap_mutex", "treelock", "tracer poke"}

// Hierarchy is the order of the classes, as violation reports print it.
const Hierarchy = "tracer -> i_mutex -> srcu -> mmap_sem -> i_mmap_mutex -> uprobes_mmap_mutex -> treelock -> tracer poke"

func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// enabled is accessed atomically.
var enabled atomic.Bool

// Enable turns the checker on. Call it before any checked lock is taken
// (TestMain); locks taken before are not tracked.
func Enable() { enabled.Store(true) }

// Enabled reports whether the checker is on.
func Enabled() bool { return enabled.Load() }

// Violation describes an out-of-order acquisition.
type Violation struct {
	Held      Class  // the class of the lock already held
	HeldName  string // its name
	HeldSite  string // file:line where it was acquired
	Acquiring Class  // the class being acquired
	AcqName   string
	AcqSite   string // file:line of the offending acquisition
	Wait      bool   // the offending acquisition is a wait (Wait), not a lock
}

func (v *Violation) Error() string {
	what := "acquiring"
	if v.Wait {
		what = "waiting for"
	}
	return fmt.Sprintf("lockdep: lock order violation: %s %s (%s) at %s while holding %s (%s) acquired at %s; hierarchy is %s",
		what, v.Acquiring, v.AcqName, v.AcqSite, v.Held, v.HeldName, v.HeldSite, Hierarchy)
}

// reporter is accessed atomically.
var reporter atomic.Pointer[func(*Violation)]

// SetReporter makes f receive every violation instead of the default panic
// and returns a function restoring the previous reporter. f is called with
// no checker state locked; it must not take checked locks.
func SetReporter(f func(*Violation)) (restore func()) {
	old := reporter.Swap(&f)
	return func() { reporter.Store(old) }
}

func report(v *Violation) {
	if f := reporter.Load(); f != nil && *f != nil {
		(*f)(v)
		return
	}
	panic(v.Error())
}

// held is one lock held by a goroutine.
type held struct {
	lock  any
	class Class
	sub   int
	read  bool // a recursive read section (AcquireRead)
	name  string
	pcs   callers // where it was acquired, formatted only for a report
}

// callers are the program counters of an acquisition site.
type callers struct {
	pc [8]uintptr
	n  int
}

func here(skip int) callers {
	var c callers
	c.n = runtime.Callers(skip+1, c.pc[:])
	return c
}

// mode is how an acquisition is checked.
type mode int

const (
	modeLock   mode = iota // a lock: checked and recorded
	modeRead               // a read section: checked (may nest in its own class) and recorded
	modeWait               // a wait: checked, not recorded
	modeCheck              // a TryLock before it tries: checked, not recorded
	modeRecord             // a successful TryLock, checked before: recorded only
)

var (
	// heldMu guards heldBy.
	heldMu sync.Mutex
	// heldBy maps a goroutine id to the locks it holds, in acquisition order.
	heldBy = map[uint64][]held{}
)

// site returns file:line of the first caller outside this package and
// outside thin lock wrappers (functions named Lock*, RLock*, Try*, such as
// rmap.Inode.LockMapping, and srcu's Synchronize and ReadLock).
func (c callers) site() string {
	frames := runtime.CallersFrames(c.pc[:c.n])
	first := ""
	for {
		f, more := frames.Next()
		s := fmt.Sprintf("%s:%d", f.File, f.Line)
		if first == "" {
			first = s
		}
		name := f.Function
		if i := strings.LastIndexByte(name, '.'); i >= 0 {
			name = name[i+1:]
		}
		if !strings.HasPrefix(name, "Lock") && !strings.HasPrefix(name, "RLock") && !strings.HasPrefix(name, "Try") &&
			name != "Synchronize" && name != "ReadLock" && name != "Wait" {
			return s
		}
		if !more {
			return first
		}
	}
}

// acquire checks and (but for a wait) records an acquisition.
func acquire(lock any, c Class, sub int, name string, m mode) {
	if c == None {
		return
	}
	id := goid()
	h := held{lock: lock, class: c, sub: sub, read: m == modeRead, name: name, pcs: here(3)}
	var bad *Violation
	heldMu.Lock()
	hs := heldBy[id]
	for k := len(hs) - 1; k >= 0; k-- { // the innermost offending lock
		o := hs[k]
		if m == modeRecord {
			break
		}
		if o.class == c && o.read && m == modeRead {
			continue // read sections of one class nest
		}
		if o.class > c || (o.class == c && o.sub >= sub) {
			bad = &Violation{Held: o.class, HeldName: o.name, HeldSite: o.pcs.site(),
				Acquiring: c, AcqName: name, AcqSite: h.pcs.site(), Wait: m == modeWait}
			break
		}
	}
	if m != modeWait && m != modeCheck {
		heldBy[id] = append(heldBy[id], h)
	}
	heldMu.Unlock()
	if bad != nil {
		report(bad)
	}
}

// Wait checks a wait for something of class c (a grace period of an srcu,
// the tracer thread) as if it were a lock of class c taken and released at
// once: it reports a violation if the calling goroutine holds a lock of a
// class c may have to wait for. name appears in the report.
func Wait(c Class, name string) {
	if enabled.Load() {
		acquire(nil, c, 0, name, modeWait)
	}
}

// AcquireRead records that the calling goroutine enters a read section of
// lock (class c), checking the order; read sections of one class may nest.
// ReleaseRead ends it.
func AcquireRead(lock any, c Class, name string) {
	if enabled.Load() {
		acquire(lock, c, 0, name, modeRead)
	}
}

// ReleaseRead ends the innermost read section of lock entered by
// AcquireRead.
func ReleaseRead(lock any, c Class) {
	if enabled.Load() {
		release(lock, c)
	}
}

// Hold records that the calling goroutine is in a state of class c until
// the returned function is called: every lock it takes meanwhile must be of
// a higher class (core/proc's tracer Holds TracerPoke while it serves poke
// requests, so that it provably takes no lock then).
func Hold(c Class, name string) (release func()) {
	if !enabled.Load() {
		return func() {}
	}
	token := new(byte)
	acquire(token, c, 0, name, modeLock)
	return func() { releaseToken(token, c) }
}

func releaseToken(token *byte, c Class) { release(token, c) }

func release(lock any, c Class) {
	if c == None {
		return
	}
	id := goid()
	heldMu.Lock()
	defer heldMu.Unlock()
	hs := heldBy[id]
	for i := len(hs) - 1; i >= 0; i-- {
		if hs[i].lock == lock {
			hs = append(hs[:i], hs[i+1:]...)
			if len(hs) == 0 {
				delete(heldBy, id)
			} else {
				heldBy[id] = hs
			}
			return
		}
	}
	// Released by another goroutine than the one that took it (allowed by
	// sync): drop it from whichever goroutine holds it.
	for gid, hs := range heldBy {
		for i := range hs {
			if hs[i].lock == lock {
				heldBy[gid] = append(hs[:i], hs[i+1:]...)
				return
			}
		}
	}
}

// HeldClasses returns the classes the calling goroutine holds, in
// acquisition order (nil when the checker is off). For assertions in tests.
func HeldClasses() []Class {
	if !enabled.Load() {
		return nil
	}
	id := goid()
	heldMu.Lock()
	defer heldMu.Unlock()
	var cs []Class
	for _, h := range heldBy[id] {
		cs = append(cs, h.class)
	}
	return cs
}

// checks is what Mutex and RWMutex add to the sync primitives: the class
// and name, and the checks around each acquisition (lock is the lock's
// identity).
type checks struct {
	class Class
	name  string
}

// Init sets the class and name. Call it before first use.
func (c *checks) Init(cl Class, name string) { c.class, c.name = cl, name }

func (c *checks) before(lock any, sub int) {
	if enabled.Load() {
		acquire(lock, c.class, sub, c.name, modeLock)
	}
}

// try checks the order like before (a retry loop around a failed TryLock
// waits like Lock), then records the lock if try succeeds.
func (c *checks) try(lock any, try func() bool) bool {
	on := enabled.Load()
	if on {
		acquire(lock, c.class, 0, c.name, modeCheck)
	}
	if !try() {
		return false
	}
	if on {
		acquire(lock, c.class, 0, c.name, modeRecord)
	}
	return true
}

func (c *checks) after(lock any) {
	if enabled.Load() {
		release(lock, c.class)
	}
}

// Mutex is a sync.Mutex with a lock class. The zero value is an unchecked
// (class None) unlocked mutex; Init gives it a class. A Mutex must not be
// copied after first use.
type Mutex struct {
	mu sync.Mutex
	checks
}

// NewMutex returns a mutex of class c; name appears in violation reports.
func NewMutex(c Class, name string) *Mutex { return &Mutex{checks: checks{c, name}} }

// Lock locks m, checking the order first when the checker is on.
func (m *Mutex) Lock() { m.before(m, 0); m.mu.Lock() }

// TryLock tries to lock m and reports whether it succeeded.
func (m *Mutex) TryLock() bool { return m.try(m, m.mu.TryLock) }

// Unlock unlocks m.
func (m *Mutex) Unlock() { m.after(m); m.mu.Unlock() }

// RWMutex is a sync.RWMutex with a lock class; read and write acquisitions
// are checked alike. The zero value is an unchecked unlocked RWMutex; Init
// gives it a class. It must not be copied after first use.
type RWMutex struct {
	mu sync.RWMutex
	checks
}

// NewRWMutex returns a read-write mutex of class c.
func NewRWMutex(c Class, name string) *RWMutex { return &RWMutex{checks: checks{c, name}} }

// Lock locks m for writing.
func (m *RWMutex) Lock() { m.before(m, 0); m.mu.Lock() }

// LockNested locks m for writing while the caller may hold other locks of
// the same class with a lower subclass (sub >= 1), like Linux's
// mmap_write_lock_nested(mm, SINGLE_DEPTH_NESTING) on fork's child mm.
func (m *RWMutex) LockNested(sub int) { m.before(m, sub); m.mu.Lock() }

// TryLock tries to lock m for writing and reports whether it succeeded.
func (m *RWMutex) TryLock() bool { return m.try(m, m.mu.TryLock) }

// Unlock unlocks m for writing.
func (m *RWMutex) Unlock() { m.after(m); m.mu.Unlock() }

// RLock locks m for reading.
func (m *RWMutex) RLock() { m.before(m, 0); m.mu.RLock() }

// TryRLock tries to lock m for reading and reports whether it succeeded.
func (m *RWMutex) TryRLock() bool { return m.try(m, m.mu.TryRLock) }

// RUnlock undoes one RLock.
func (m *RWMutex) RUnlock() { m.after(m); m.mu.RUnlock() }

// Collect makes the violations from now on be collected instead of
// reported (for tests that plant one): got returns those collected so far;
// stop restores the previous reporter.
func Collect() (got func() []*Violation, stop func()) {
	var mu sync.Mutex
	var vs []*Violation
	stop = SetReporter(func(v *Violation) {
		mu.Lock()
		vs = append(vs, v)
		mu.Unlock()
	})
	return func() []*Violation {
		mu.Lock()
		defer mu.Unlock()
		return append([]*Violation(nil), vs...)
	}, stop
}
