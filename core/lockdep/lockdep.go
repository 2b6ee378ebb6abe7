// Package lockdep gives the engine's locks a class and checks, when enabled,
// that every goroutine takes them in the order of the lock hierarchy
// (core/probes' package doc draws it):
//
//	i_mutex -> mmap_sem -> i_mmap_mutex -> uprobes_mmap_mutex -> treelock
//
// A goroutine may acquire a lock of class C only while every lock it holds
// has a class strictly lower than C. Two locks of one class may nest only
// when the inner one is taken with an explicit, higher subclass
// (RWMutex.LockNested), as Linux's mmap_lock_nested does for fork.
// TryLock never violates the order (it cannot block) but is recorded as held.
//
// The checker is off by default: then a lock operation costs one atomic load
// more than the sync primitive it wraps. Tests turn it on with Enable (in
// TestMain). When on, it records, per goroutine (identified by the goroutine
// id parsed from runtime.Stack, test mode only), the locks held and the site
// each was acquired at, and reports an out-of-order acquisition with both
// sites through the reporter (SetReporter; the default panics).
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
	// IMutex is inode->i_mutex: serializes register/unregister on one inode.
	IMutex
	// MmapSem is mm->mmap_sem.
	MmapSem
	// IMmapMutex is mapping->i_mmap_mutex: guards an inode's set of VMAs.
	IMmapMutex
	// UprobesMmapMutex is uprobes_mmap_mutex: serializes mmap_uprobe and
	// the deletion of a uprobe.
	UprobesMmapMutex
	// Treelock guards the uprobe tree.
	Treelock
)

var classNames = [...]string{"none", "i_mutex", "mmap_sem", "i_mmap_mutex", "uprobes_mmap_mutex", "treelock"}

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
}

func (v *Violation) Error() string {
	return fmt.Sprintf("lockdep: lock order violation: acquiring %s (%s) at %s while holding %s (%s) acquired at %s; hierarchy is i_mutex -> mmap_sem -> i_mmap_mutex -> uprobes_mmap_mutex -> treelock",
		v.Acquiring, v.AcqName, v.AcqSite, v.Held, v.HeldName, v.HeldSite)
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
	name  string
	site  string
}

var (
	// heldMu guards heldBy.
	heldMu sync.Mutex
	// heldBy maps a goroutine id to the locks it holds, in acquisition order.
	heldBy = map[uint64][]held{}
)

// goid returns the current goroutine's id (test mode only: it formats the stack header).
func goid() uint64 {
	var buf [32]byte
	n := runtime.Stack(buf[:], false)
	// "goroutine 123 [running]:..."
	var id uint64
	for _, c := range buf[len("goroutine "):n] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}

// site returns file:line of the first caller outside this package and
// outside thin lock wrappers (functions named Lock*/RLock*, such as
// rmap.Inode.LockMapping).
func site(skip int) string {
	var pcs [8]uintptr
	n := runtime.Callers(skip+1, pcs[:])
	frames := runtime.CallersFrames(pcs[:n])
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
		if !strings.HasPrefix(name, "Lock") && !strings.HasPrefix(name, "RLock") {
			return s
		}
		if !more {
			return first
		}
	}
}

// acquire checks and records an acquisition. check is false for TryLock.
func acquire(lock any, c Class, sub int, name string, check bool) {
	if c == None {
		return
	}
	id := goid()
	h := held{lock: lock, class: c, sub: sub, name: name, site: site(3)}
	var bad *Violation
	heldMu.Lock()
	if check {
		for _, o := range heldBy[id] {
			if o.class > c || (o.class == c && o.sub >= sub) {
				bad = &Violation{Held: o.class, HeldName: o.name, HeldSite: o.site,
					Acquiring: c, AcqName: name, AcqSite: h.site}
				break
			}
		}
	}
	heldBy[id] = append(heldBy[id], h)
	heldMu.Unlock()
	if bad != nil {
		report(bad)
	}
}

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

// Mutex is a sync.Mutex with a lock class. The zero value is an unchecked
// (class None) unlocked mutex; Init gives it a class. A Mutex must not be
// copied after first use.
type Mutex struct {
	mu    sync.Mutex
	class Class
	name  string
}

// NewMutex returns a mutex of class c; name appears in violation reports.
func NewMutex(c Class, name string) *Mutex { return &Mutex{class: c, name: name} }

// Init sets the class and name. Call it before first use.
func (m *Mutex) Init(c Class, name string) { m.class, m.name = c, name }

// Lock locks m, checking the order first when the checker is on.
func (m *Mutex) Lock() {
	if enabled.Load() {
		acquire(m, m.class, 0, m.name, true)
	}
	m.mu.Lock()
}

// TryLock tries to lock m and reports whether it succeeded.
func (m *Mutex) TryLock() bool {
	if !m.mu.TryLock() {
		return false
	}
	if enabled.Load() {
		acquire(m, m.class, 0, m.name, false)
	}
	return true
}

// Unlock unlocks m.
func (m *Mutex) Unlock() {
	if enabled.Load() {
		release(m, m.class)
	}
	m.mu.Unlock()
}

// RWMutex is a sync.RWMutex with a lock class; read and write acquisitions
// are checked alike. The zero value is an unchecked unlocked RWMutex; Init
// gives it a class. It must not be copied after first use.
type RWMutex struct {
	mu    sync.RWMutex
	class Class
	name  string
}

// NewRWMutex returns a read-write mutex of class c.
func NewRWMutex(c Class, name string) *RWMutex { return &RWMutex{class: c, name: name} }

// Init sets the class and name. Call it before first use.
func (m *RWMutex) Init(c Class, name string) { m.class, m.name = c, name }

// Lock locks m for writing.
func (m *RWMutex) Lock() {
	if enabled.Load() {
		acquire(m, m.class, 0, m.name, true)
	}
	m.mu.Lock()
}

// LockNested locks m for writing while the caller may hold other locks of
// the same class with a lower subclass (sub >= 1), like Linux's
// mmap_write_lock_nested(mm, SINGLE_DEPTH_NESTING) on fork's child mm.
func (m *RWMutex) LockNested(sub int) {
	if enabled.Load() {
		acquire(m, m.class, sub, m.name, true)
	}
	m.mu.Lock()
}

// TryLock tries to lock m for writing and reports whether it succeeded.
func (m *RWMutex) TryLock() bool {
	if !m.mu.TryLock() {
		return false
	}
	if enabled.Load() {
		acquire(m, m.class, 0, m.name, false)
	}
	return true
}

// Unlock unlocks m for writing.
func (m *RWMutex) Unlock() {
	if enabled.Load() {
		release(m, m.class)
	}
	m.mu.Unlock()
}

// RLock locks m for reading.
func (m *RWMutex) RLock() {
	if enabled.Load() {
		acquire(m, m.class, 0, m.name, true)
	}
	m.mu.RLock()
}

// TryRLock tries to lock m for reading and reports whether it succeeded.
func (m *RWMutex) TryRLock() bool {
	if !m.mu.TryRLock() {
		return false
	}
	if enabled.Load() {
		acquire(m, m.class, 0, m.name, false)
	}
	return true
}

// RUnlock undoes one RLock.
func (m *RWMutex) RUnlock() {
	if enabled.Load() {
		release(m, m.class)
	}
	m.mu.RUnlock()
}
