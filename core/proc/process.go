package proc

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// tstate is what the tracer knows of a thread.
type tstate int

const (
	running   tstate = iota // resumed; its next stop will be reported
	stopped                 // in a ptrace-stop that the tracer holds
	listening               // in group-stop, PTRACE_LISTEN issued
)

// thread is a traced thread. Tracer-owned.
type thread struct {
	tid int
	// tgid is the thread's own process id (a vfork child's threads have
	// their own tgid but share the parent's process, i.e. its MM).
	tgid  int
	proc  *process
	state tstate
	// detach: detach at the next stop.
	detach bool
	// pend: seized at an exec of a watched file, its exec event to come
	// (proc is nil until then). newproc.go.
	pend *pendExec
	// dead: it exited during a syscall injection (to be dropped).
	dead bool
	// sigs are signals that arrived during a syscall injection, to be
	// delivered at the next resume.
	sigs []int
	// statFile is /proc/TGID/task/TID/stat for placement (lazily opened).
	statFile *os.File
}

// process is a traced address space: an rmap.MM and the threads that run
// in it. The tracer-owned fields are only touched on the tracer thread.
type process struct {
	pid int // the pid the MM was created for. Immutable.
	mm  *rmap.MM
	as  *addressSpace

	// bpMu is a leaf lock guarding bps and everBp; the engine's install
	// and remove hooks take it under mmap_sem, the hit path alone.
	bpMu sync.Mutex
	// bps maps the vaddr of each breakpoint the engine has in place to
	// its uprobe: the hit path's lookup (equivalent to the engine's
	// LookupLocked, without mmap_sem).
	bps map[uint64]*probes.Uprobe
	// everBp maps every vaddr where a breakpoint was ever installed to
	// its original byte: a trap there after the breakpoint was removed
	// restarts the instruction, and a fork child's stray copies are
	// cleaned with it.
	everBp map[uint64]byte

	// Tracer-owned.
	threads   map[int]*thread
	xol       xolState
	detaching bool
	gone      bool
	// rbrk is the vaddr of the internal breakpoint on the loader's
	// _dl_debug_state (0: none), rbrkPlan its step-over plan, rstate the
	// vaddr of r_debug.r_state (0: unknown). See rdebug.go.
	rbrk     uint64
	rbrkPlan *install.Plan
	rstate   uint64
	// expect, when not zero, keeps the process traced until then although
	// it maps no watched inode (it opened a watched library). newproc.go.
	expect time.Time
}

func newProcess(w *World, pid int) (*process, error) {
	p := &process{
		pid:     pid,
		bps:     map[uint64]*probes.Uprobe{},
		everBp:  map[uint64]byte{},
		threads: map[int]*thread{},
	}
	as, err := openAddressSpace(w, p)
	if err != nil {
		return nil, err
	}
	p.as = as
	p.mm = rmap.NewMM(pid, as)
	return p, nil
}

// attach seizes every thread of pid and builds its MM.
// Preconditions: on the tracer thread; pid not traced by us.
func (w *World) attach(pid int) (*process, error) {
	self := w.t.tid // TracerPid names the tracer thread
	if err := w.checkAttachable(pid); err != nil {
		return nil, err
	}
	if err := ptraceSeize(pid); err != nil {
		if err == unix.ESRCH {
			return nil, fmt.Errorf("pid %d: %w", pid, syscall.ESRCH)
		}
		if st2, e := pidStatus(pid); e == nil && st2.TracerPid == self {
			// Auto-attached (a fork child) and not announced yet.
			return nil, fmt.Errorf("pid %d: traced already: %w", pid, syscall.ESRCH)
		} else if e == nil && st2.TracerPid != 0 {
			return nil, fmt.Errorf("pid %d: already traced by pid %d (%v)", pid, st2.TracerPid, err)
		}
		return nil, fmt.Errorf("pid %d: cannot attach: %w", pid, err)
	}
	p, err := newProcess(w, pid)
	if err != nil {
		// Nothing is written yet: detach at its first stop.
		th := w.addThread(nil, pid, pid)
		th.detach = true
		ptraceInterrupt(pid)
		return nil, err
	}
	w.addProcess(p)
	w.addThread(p, pid, pid)
	w.seizeThreads(pid, func(tid int) { w.addThread(p, tid, pid) })
	if err := w.addMappings(p); err != nil {
		w.errorf("attach pid %d: %v", pid, err)
	}
	return p, nil
}

// seizeThreads seizes every thread of pid that is not traced yet and calls
// add (which must record it in w.threads) for each. Threads they create
// meanwhile are auto-attached (clone events); a thread auto-attached through
// a clone event not seen yet (EPERM, TracerPid is the tracer thread) is ours
// too; threads made by not-yet-seized ones are found by the next pass.
// Preconditions: on the tracer thread.
func (w *World) seizeThreads(pid int, add func(tid int)) {
	self := w.t.tid // TracerPid names the tracer thread
	for {
		tids, err := listTasks(pid)
		if err != nil {
			return
		}
		added := 0
		for _, tid := range tids {
			if w.threads[tid] != nil {
				continue
			}
			err := ptraceSeize(tid)
			if err == unix.EPERM {
				if s, e := readStatus(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid)); e == nil && s.TracerPid == self {
					err = nil
				}
			}
			if err == nil {
				add(tid)
				added++
			}
		}
		if added == 0 {
			return
		}
	}
}

// addMappings reads p's maps, inserts (InsertVMALocked + MmapHook) every
// mapping of a watched inode that p's MM does not have yet, and puts the
// r_brk breakpoint (rdebug.go) if p has none and is to stay traced.
// Preconditions: on the tracer thread.
func (w *World) addMappings(p *process) error {
	ms, err := readMaps(p.pid)
	if err != nil {
		return err
	}
	err = w.insertMappings(p, ms)
	if w.hasWatched(p) || w.expecting(p) {
		w.setRbrk(p, ms)
	}
	return err
}

func (w *World) addProcess(p *process) {
	w.procs[p.pid] = p
	w.nProcs.Add(1)
}

// addThread records a traced thread (running). p may be nil for a thread
// that is only to be detached.
func (w *World) addThread(p *process, tid, tgid int) *thread {
	if th := w.threads[tid]; th != nil {
		return th
	}
	th := &thread{tid: tid, tgid: tgid, proc: p}
	w.threads[tid] = th
	if p != nil {
		p.threads[tid] = th
	}
	w.nThreads.Add(1)
	return th
}

// dropThread forgets a thread (it exited or was detached) and tears its
// process down when it was the last one.
func (w *World) dropThread(th *thread) {
	if w.threads[th.tid] != th {
		return
	}
	delete(w.threads, th.tid)
	w.nThreads.Add(-1)
	if th.statFile != nil {
		th.statFile.Close()
	}
	if p := th.proc; p != nil {
		delete(p.threads, th.tid)
		if len(p.threads) == 0 {
			w.dropProcess(p)
		}
	}
	w.checkWaiters()
}

// dropProcess removes p's VMAs from the engine and forgets it.
func (w *World) dropProcess(p *process) {
	if p.gone {
		return
	}
	p.gone = true
	// The address space is gone (exit, exec) or restored (detach):
	// forget the VMAs without writing.
	mm := p.mm
	w.lockMM(mm)
	for _, v := range mm.VMAsLocked() {
		mm.RemoveVMALocked(v)
		w.eng.MunmapHook(v)
	}
	mm.MmapSem.Unlock()
	p.bpMu.Lock()
	clear(p.bps)
	p.bpMu.Unlock()
	p.as.close()
	if w.procs[p.pid] == p {
		delete(w.procs, p.pid)
		w.nProcs.Add(-1)
	}
	w.checkWaiters()
}

func (w *World) insertMappings(p *process, ms []mapping) error {
	w.lockMM(p.mm)
	defer p.mm.MmapSem.Unlock()
	return w.insertMappingsLocked(p, ms)
}

// insertMappingsLocked is insertMappings with p.mm.MmapSem held for writing.
// A process being detached (or gone) gets no VMA: its breakpoints have been
// restored, and one installed now would stay behind after the detach.
func (w *World) insertMappingsLocked(p *process, ms []mapping) error {
	if p.detaching || p.gone {
		return nil
	}
	var first error
	mm := p.mm
	for i := range ms {
		m := &ms[i]
		in := w.watched[rmap.InodeKey{Dev: m.Dev, Ino: m.Ino}]
		if in == nil || m.Ino == 0 {
			continue
		}
		if v := mm.FindVMALocked(m.Start); v != nil {
			if v.Start == m.Start && v.End == m.End && v.Inode == in && v.Pgoff == m.Off {
				continue
			}
			// The mapping changed under an old VMA: it is gone.
			mm.RemoveVMALocked(v)
			w.eng.MunmapHook(v)
			w.forgetRange(p, v.Start, v.End)
		}
		v := &rmap.VMA{MM: mm, Start: m.Start, End: m.End, Pgoff: m.Off, Inode: in, Exec: m.Exec()}
		if overlaps(mm, v) {
			continue
		}
		mm.InsertVMALocked(v)
		if err := w.eng.MmapHook(v); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func overlaps(mm *rmap.MM, v *rmap.VMA) bool {
	for _, o := range mm.VMAsLocked() {
		if o.Start < v.End && v.Start < o.End {
			return true
		}
	}
	return false
}

// removeMappings removes the VMAs of p selected by which from the engine,
// restoring first any breakpoint the world still has inside them.
// Preconditions: on the tracer thread.
func (w *World) removeMappings(p *process, which func(*rmap.VMA) bool) {
	mm := p.mm
	w.lockMM(mm)
	defer mm.MmapSem.Unlock()
	for _, v := range mm.VMAsLocked() {
		if !which(v) {
			continue
		}
		w.restoreRange(p, v.Start, v.End)
		mm.RemoveVMALocked(v)
		w.eng.MunmapHook(v)
	}
}

// restoreRange restores every breakpoint of p in [start, end).
func (w *World) restoreRange(p *process, start, end uint64) {
	p.bpMu.Lock()
	var left []uint64
	var us []*probes.Uprobe
	for va, u := range p.bps {
		if va >= start && va < end {
			left = append(left, va)
			us = append(us, u)
		}
	}
	p.bpMu.Unlock()
	for i, va := range left {
		if err := install.RemoveBreakpoint(p.as, va, us[i].Insn[0]); err != nil && !errors.Is(err, syscall.ESRCH) {
			w.errorf("restore pid %d %#x: %v", p.pid, va, err)
		}
		p.bpMu.Lock()
		if p.bps[va] == us[i] {
			delete(p.bps, va)
		}
		p.bpMu.Unlock()
	}
}

// hasWatched reports whether p maps a watched inode.
func (w *World) hasWatched(p *process) bool {
	p.mm.MmapSem.RLock()
	defer p.mm.MmapSem.RUnlock()
	for _, v := range p.mm.VMAsLocked() {
		if v.Inode != nil && w.watched[v.Inode.Key] != nil {
			return true
		}
	}
	return false
}

// detachProcess restores p's breakpoints, removes its VMAs and detaches its
// threads: each is detached at its next stop, which PTRACE_INTERRUPT
// brings about. Preconditions: on the tracer thread.
func (w *World) detachProcess(p *process) {
	p.detaching = true
	p.expect = time.Time{}
	w.removeMappings(p, func(*rmap.VMA) bool { return true })
	w.restoreRange(p, 0, ^uint64(0))
	w.removeRbrk(p)
	for _, th := range p.threads {
		w.detachThread(th)
	}
}

// detachThread arranges for th to be detached: now if it is stopped,
// at its next stop otherwise.
func (w *World) detachThread(th *thread) {
	th.detach = true
	switch th.state {
	case stopped:
		w.detachNow(th, 0)
	case running, listening:
		if err := ptraceInterrupt(th.tid); err == unix.ESRCH {
			// Gone (its exit is reported) or not stopped yet.
		}
	}
}

// detachNow detaches a stopped thread, delivering sig.
func (w *World) detachNow(th *thread, sig int) {
	if len(th.sigs) > 0 && sig == 0 {
		sig, th.sigs = th.sigs[0], th.sigs[1:]
	}
	for _, s := range th.sigs {
		unix.Tgkill(th.tgid, th.tid, unix.Signal(s))
	}
	th.sigs = nil
	if err := ptraceDetach(th.tid, sig); err != nil && err != unix.ESRCH {
		w.errorf("detach tid %d: %v", th.tid, err)
	}
	w.dropThread(th)
}

// detachWaiter is closed when none of its processes is traced any more.
type detachWaiter struct {
	procs []*process
	done  chan struct{}
}

// waitDetached returns a waiter for ps (closed at once if none).
func (w *World) waitDetached(ps []*process) *detachWaiter {
	wt := &detachWaiter{procs: ps, done: make(chan struct{})}
	w.waiters = append(w.waiters, wt)
	w.checkWaiters()
	return wt
}

func (w *World) checkWaiters() {
	keep := w.waiters[:0]
	for _, wt := range w.waiters {
		left := false
		for _, p := range wt.procs {
			if !p.gone {
				left = true
				break
			}
		}
		if left {
			keep = append(keep, wt)
		} else {
			close(wt.done)
		}
	}
	for i := len(keep); i < len(w.waiters); i++ {
		w.waiters[i] = nil
	}
	w.waiters = keep
}
