package proc

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/uprobefs/uprobefs/core/fanotify"
	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/ledger"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Skip is a process that maps a watched inode but could not be traced. It
// is the same type as core/manager's Skip (an alias of one unnamed struct
// type), so that World implements the manager's optional interfaces
// without importing it.
type Skip = struct {
	Pid    int
	Reason string
}

// ErrOwnChild is the reason a child of this process is never traced: the
// tracer's wait would steal its exit status from os/exec (and os/exec's
// wait would steal our ptrace stops).
var ErrOwnChild = errors.New("a child of the tracing process")

// Placement says where the tracer thread runs.
type Placement int

const (
	// PlaceNone leaves the tracer thread to the scheduler.
	PlaceNone Placement = iota
	// PlaceFollow moves the tracer thread (sched_setaffinity) to the CPU
	// of the tracee it last served, and runs it at SCHED_IDLE, so that the
	// ping-pong of a hit stays on one CPU: the resumed tracee preempts the
	// tracer at once, and the trap wakes the tracer on the CPU the tracee
	// just left. About 30 % less per hit than PlaceNone on a quiet CPU;
	// on a CPU kept busy by another process the tracer (idle weight, and
	// pinned there) gets little CPU and hits wait for it: use it where the
	// traced workload's CPUs are not saturated by others.
	PlaceFollow
)

// Options configure a World. The zero value gives the defaults.
type Options struct {
	// Placement of the tracer thread (default PlaceNone).
	Placement Placement
	// DetachTimeout bounds how long Unwatch and Close wait for the
	// threads of a process to stop so they can be detached (default 5s).
	DetachTimeout time.Duration
	// ForcePokeData makes every memory write use PTRACE_POKEDATA, as when
	// the kernel refuses /proc/PID/mem writes (for tests).
	ForcePokeData bool
	// Ledger, if not nil, records every breakpoint written (before it is
	// written) until its byte is restored, for the guardian that restores
	// them if the daemon dies (internal/ledger).
	Ledger *ledger.Ledger
	// ForceShadowStack treats every thread as running with a CET shadow
	// stack: call and ret run in branch slots, never emulated (for
	// tests on CPUs without shadow stacks).
	ForceShadowStack bool
	// Profile, if not nil, records where the hit path spends its time.
	Profile *HitProfile
	// Log receives diagnostics (default: none).
	Log func(format string, args ...any)
	// NoFanotify disables the fanotify holds of new processes: they are
	// found by /proc rescans instead, as where fanotify is unavailable
	// (for tests).
	NoFanotify bool
	// NoJump keeps every breakpoint on the trap path: no jump sites
	// (jump.go), as the trap mount option asks.
	NoJump bool
	// RescanInterval is the period of the /proc rescans used without
	// fanotify (default 100ms).
	RescanInterval time.Duration
}

// World is the real world under the engine: Linux processes traced with
// ptrace, their address spaces read from /proc and written through
// /proc/PID/mem. It finds the processes that map watched inodes, attaches
// to them, feeds their mappings to the engine's hooks, counts hits and
// steps over the probed instructions, follows clone, fork, exec and exit,
// and detaches from processes that map no watched inode any more.
//
// All ptrace requests, and all process and thread state, belong to the
// tracer thread (tracer.go); the exported methods send it requests. They
// are safe for concurrent use. See doc.go for the design.
type World struct {
	eng    *probes.Engine
	inodes *rmap.Inodes
	opts   Options
	t      *tracer

	// Tracer-owned state (only touched on the tracer thread).
	watched map[rmap.InodeKey]*rmap.Inode
	procs   map[int]*process // by the pid the MM was created for
	threads map[int]*thread  // every traced tid
	orphans map[int]orphan   // stops of auto-attached tids not announced yet
	// reapable are tids dropped without their exit being reaped yet
	// (the other threads of an exec).
	reapable map[int]bool
	// reloc caches whether a plan can run out of line.
	reloc   map[*install.Plan]bool
	waiters []*detachWaiter
	place   placer
	// pending are the processes seized at an exec, by pid (newproc.go).
	pending map[int]*pendExec
	// ldsos caches the dynamic loaders' r_brk (nil: none), by inode.
	ldsos map[rmap.InodeKey]*ldso
	// deferred are stops reaped while serving poke requests, and poking
	// the processes with pending pokes (poke.go).
	deferred []deferredStop
	poking   map[*process]bool
	// sigFiles caches the sigaction function of mapped files (nil:
	// none), by inode (sigaction.go).
	sigFiles map[rmap.InodeKey]*sigHookFile
	// filters are the process filters of watched inodes (filter.go).
	filters map[rmap.InodeKey]func(pid int) bool

	// test holds the planted bugs of the tests (empty without the
	// "planted" build tag).
	test worldTestHooks

	// fan holds new processes at exec/open of watched files; nil where
	// fanotify does not work (fanErr says why). Immutable after NewWorld.
	fan    *fanotify.Watcher
	fanErr error
	// The /proc rescan used without fanotify.
	rescanOnce sync.Once
	rescanStop func()
	rescanDone chan struct{}

	// skips are the recorded reasons why processes that map a watched
	// inode are not traced, by inode and pid (skips.go). skips is
	// protected by skipMu; entries are added only for a watched inode
	// (under the tracer thread's check of watched).
	skipMu sync.Mutex
	skips  map[rmap.InodeKey]map[int]string

	// jumpMu is a leaf lock guarding the jump sites' counting (jump.go):
	// jumpBy, the sites of each uprobe, and each process's jump.sites
	// and jump.want.
	jumpMu sync.Mutex
	jumpBy map[*probes.Uprobe]map[*jumpSite]bool
	// jumpInos are the memfds of the processes' jump regions (jumpadopt.go).
	jumpInos map[uint64]bool
	// Events (jumpev.go): evOK, the trampolines carry them (immutable);
	// evOn counts the flags set, draining says the drain runs, fsTids
	// map each process's fs bases to tids, tsc converts their times;
	// under jumpMu.
	evOK   bool
	perCPU bool // trampolines count per CPU (immutable, jumpev.go)
	// vdsoSys is the offset of a syscall instruction in the vdso, once
	// found (inject.go).
	vdsoSys  atomic.Uint64
	evOn     int
	draining bool
	fsTids   map[int]map[uint64]int
	tsc      tscClock

	// Counters, accessed atomically.
	nProcs, nThreads atomic.Int64
	nHits, nErrors   atomic.Int64
	nJumpHits        atomic.Int64 // counted by jump sites (nHits: by traps)
	execProf         execProfile  // stats.go
	nEvLost          atomic.Int64 // event records of jump sites lost (jumpev.go)
	closed           atomic.Bool
}

// NewWorld starts the tracer thread. eng must have been created with
// EngineOptions(); inodes is the registry the engine's callers use.
func NewWorld(eng *probes.Engine, inodes *rmap.Inodes, o Options) (*World, error) {
	if o.DetachTimeout <= 0 {
		o.DetachTimeout = 5 * time.Second
	}
	if o.RescanInterval <= 0 {
		o.RescanInterval = 100 * time.Millisecond
	}
	w := &World{
		eng:      eng,
		inodes:   inodes,
		opts:     o,
		watched:  map[rmap.InodeKey]*rmap.Inode{},
		procs:    map[int]*process{},
		threads:  map[int]*thread{},
		orphans:  map[int]orphan{},
		reapable: map[int]bool{},
		reloc:    map[*install.Plan]bool{},
		skips:    map[rmap.InodeKey]map[int]string{},
		pending:  map[int]*pendExec{},
		ldsos:    map[rmap.InodeKey]*ldso{},
		poking:   map[*process]bool{},
		sigFiles: map[rmap.InodeKey]*sigHookFile{},
		evOK:     evSupported(),
	}
	w.perCPU = w.evOK && hasRDPID() && os.Getenv("NOPERCPU") == ""
	w.place.init(o.Placement)
	if w.evOK {
		w.tsc.init()
	}
	t, err := startTracer(w)
	if err != nil {
		return nil, err
	}
	w.t = t
	if o.Profile != nil {
		t.do(func() { t.profile = true })
	}
	w.startDiscovery()
	addLiveWorld(w)
	return w, nil
}

func (w *World) log(format string, args ...any) {
	if w.opts.Log != nil {
		w.opts.Log(format, args...)
	}
}

// errorf counts an error and logs it.
func (w *World) errorf(format string, args ...any) {
	w.nErrors.Add(1)
	w.log(format, args...)
}

// Watch finds every process that maps in (through /proc/PID/maps), attaches
// to it and feeds its VMAs of in to the engine; from then on, processes
// that exec in or open it (a library) are held by fanotify until they are
// attached, and traced processes that fork, exec, map or unmap in are
// followed (see newproc.go, rdebug.go). A process that cannot be attached
// is not an error: it is listed by Skipped. Watch is called before the
// first Register on in; path names the file.
func (w *World) Watch(in *rmap.Inode, path string) error {
	if w.closed.Load() {
		return ErrClosed
	}
	// Watched first, then marked, then scanned: a process that execs in
	// meanwhile is attached by the handler or found by the scan.
	if err := w.t.do(func() { w.watched[in.Key] = in }); err != nil {
		return err
	}
	undo := func() {
		w.unmark(in)
		w.t.do(func() { delete(w.watched, in.Key) })
	}
	if err := w.mark(in, path); err != nil {
		undo()
		return fmt.Errorf("watch %s: %w", path, err)
	}
	if err := w.scanAttach(in, path); err != nil {
		undo()
		return err
	}
	return nil
}

// Rescan looks for the processes that map the watched inode in again and
// attaches those not traced yet, and inserts its mappings into the traced
// ones whose filter verdicts were reset (SetFilter): for a filter that now
// selects more processes.
func (w *World) Rescan(in *rmap.Inode, path string) error {
	if w.closed.Load() {
		return ErrClosed
	}
	return w.scanAttach(in, path)
}

// scanAttach scans /proc for the processes mapping in and attaches them.
func (w *World) scanAttach(in *rmap.Inode, path string) error {
	// Scan, attach, and scan again: a process whose execve opened the file
	// before the mark (so fanotify does not hold it) maps it a moment
	// later, possibly after the first scan read its maps; the second scan
	// finds it (its exec has long completed by then: a scan and the attach
	// of what it found take far longer than an execve's open-to-mmap).
	// Each pass attaches only what the previous ones did not.
	var skips []Skip
	seen := map[int]bool{}
	for pass := 0; pass < watchScans; pass++ {
		var skip map[int]bool
		if pass > 0 {
			skip = seen // the processes found before are not looked at again
		}
		pids, maps, err := procfs.PidsMappingMaps([]procfs.FileID{procfs.FileID(in.Key)}, skip)
		if err != nil {
			if pass == 0 {
				return fmt.Errorf("watch %s: %w", path, err)
			}
			break
		}
		var fresh []int
		for _, pid := range pids {
			if !seen[pid] {
				seen[pid] = true
				fresh = append(fresh, pid)
			}
		}
		if pass > 0 && len(fresh) == 0 {
			break
		}
		err = w.t.do(func() { skips = append(skips, w.watchAttach(path, w.selectedPids(in.Key, fresh), pids, maps)...) })
		if err != nil {
			return err
		}
	}
	for _, s := range skips {
		w.recordSkip(in.Key, s.Pid, s.Reason)
		w.log("watch %s: pid %d not traced: %s", path, s.Pid, s.Reason)
	}
	return nil
}

// watchScans is how many /proc scans Watch makes at most (see Watch).
const watchScans = 3

// watchAttach attaches the processes pids found mapping the watched file at
// path (cands: every process found, where sharers of an address space are
// looked for; maps: their maps as the scan read them) and returns those
// that could not be attached.
// Preconditions: on the tracer thread.
func (w *World) watchAttach(path string, pids, cands []int, maps map[int][]procfs.Mapping) []Skip {
	var skips []Skip
	groups := newScanned(cands, maps)
	for _, pid := range pids {
		if th := w.threads[pid]; th != nil {
			// Traced (a process, or a member of one sharing an address
			// space), or seized at its exec (its exec event comes).
			if p := th.proc; p != nil && !p.gone {
				if err := w.addMappings(p); err != nil {
					w.errorf("watch %s: pid %d: %v", path, pid, err)
				}
			}
			continue
		}
		if _, ok := w.orphans[pid]; ok {
			continue // a fork child, announced soon
		}
		if _, err := w.attach(pid, groups); err != nil {
			if !errors.Is(err, syscall.ESRCH) {
				skips = append(skips, Skip{Pid: pid, Reason: err.Error()})
			}
		}
	}
	return skips
}

// Unwatch forgets in: it removes the VMAs of in from the engine (restoring
// any breakpoint still there) and detaches every process that maps no
// watched inode any more, waiting up to Options.DetachTimeout for them.
// Called after the last Unregister on in.
func (w *World) Unwatch(in *rmap.Inode) {
	w.unmark(in)
	var wt *detachWaiter
	err := w.t.do(func() {
		delete(w.watched, in.Key)
		w.forgetFilter(in.Key)
		var ps []*process
		for _, p := range w.sortedProcs() {
			w.removeMappings(p, func(v *rmap.VMA) bool { return v.Inode == in })
			if !p.detaching && !w.hasWatched(p) {
				w.detachProcess(p)
			}
			if p.detaching {
				ps = append(ps, p)
			}
		}
		wt = w.waitDetached(ps)
	})
	w.skipMu.Lock()
	delete(w.skips, in.Key)
	w.skipMu.Unlock()
	if err == nil {
		w.await(wt, "unwatch")
	}
}

// await waits for a detach waiter with the DetachTimeout.
func (w *World) await(wt *detachWaiter, what string) {
	if wt == nil {
		return
	}
	select {
	case <-wt.done:
	case <-time.After(w.opts.DetachTimeout):
		w.errorf("%s: processes still not detached after %v", what, w.opts.DetachTimeout)
	}
}

// Close restores every original byte the world wrote, detaches every
// thread (leaving it running, or stopped if it was stopped by job control),
// and ends the tracer thread. Slot pages stay mapped in the processes (see
// doc.go). Close waits up to Options.DetachTimeout for threads to stop; any
// thread still attached then is detached by the kernel when the tracer
// thread exits.
func (w *World) Close() error {
	if w.closed.Swap(true) {
		return nil
	}
	defer removeLiveWorld(w)
	if w.fan != nil {
		// Every held process is let go (they are not attached any more).
		if err := w.fan.Close(); err != nil {
			w.errorf("close: fanotify: %v", err)
		}
	}
	w.rescanOnce.Do(func() {}) // a rescan started by Watch is visible; none starts later
	if w.rescanStop != nil {
		w.rescanStop()
		<-w.rescanDone
	}
	var wt *detachWaiter
	err := w.t.do(func() {
		var ps []*process
		for _, p := range w.sortedProcs() {
			if !p.detaching {
				w.detachProcess(p)
			}
			ps = append(ps, p)
		}
		for _, th := range w.threads {
			if th.proc == nil && !th.detach {
				th.pend = nil
				w.detachThread(th)
			}
		}
		wt = w.waitDetached(ps)
	})
	if err != nil {
		return err
	}
	w.await(wt, "close")
	var left int
	err = w.t.close(func() {
		left = len(w.threads)
		for _, th := range w.threads {
			// Best effort: a thread that is stopped now can still be
			// detached cleanly.
			ptraceDetach(th.tid, 0)
		}
	})
	if left > 0 {
		return fmt.Errorf("proc: close: %d threads were still attached after %v", left, w.opts.DetachTimeout)
	}
	return err
}

func (w *World) sortedProcs() []*process {
	ps := make([]*process, 0, len(w.procs))
	for _, p := range w.procs {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].pid < ps[j].pid })
	return ps
}

// pidsMapping scans /proc/*/maps for processes mapping the inode k.
func pidsMapping(k rmap.InodeKey) ([]int, error) {
	return procfs.PidsMapping([]procfs.FileID{procfs.FileID(k)}, nil)
}
