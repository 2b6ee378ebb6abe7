package proc

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/procfs"
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
	// follow says what its system calls are followed for (syscalls.go),
	// sigLeft and mapLeft for how many more; newAct is the struct
	// sigaction of an rt_sigaction(SIGTRAP) call in progress, mapCall that
	// the call in progress maps executable memory.
	follow           int
	sigLeft, mapLeft int
	newAct           *[32]byte
	mapCall          bool
	// execed: its stop, reaped but deferred, is an exec's: its address
	// space is no longer its process's (poke.go).
	execed bool
	// sigs are signals that arrived during a syscall injection, to be
	// delivered at the next resume.
	sigs []int
	// step is a step-over under way whose end the tracer must see
	// (slotsig.go), popfAt where a popf run in a slot may trap early.
	step   *stepping
	popfAt uint64
	// shstk caches whether it runs with a shadow stack (shstk.go).
	shstk int
	// rets is its return stack: pending returns of return probes
	// (uretprobe.go), innermost last.
	rets []retInst
	// statFile is /proc/TGID/task/TID/stat for placement (lazily opened).
	statFile *os.File
}

// process is a traced address space: an rmap.MM and the threads that run
// in it. The tracer-owned fields are only touched on the tracer thread.
type process struct {
	pid int // the pid the MM was created for. Immutable.
	mm  *rmap.MM
	as  *addressSpace
	// maps answers which mapping covers an address (the checked write
	// path). Immutable; closed with the process.
	maps mapsQuery
	// batches are the runs of breakpoint writes under way (textbatch.go).
	batches textBatches

	// everMu is a leaf lock guarding everBp; the engine's install hook
	// takes it under mmap_sem, the tracer alone.
	everMu sync.Mutex
	// everBp maps every vaddr where a breakpoint was ever installed to
	// what was expected there (file, offset, instruction): a history, not a table of what is in place (the
	// engine's is): a trap there after the breakpoint was removed restarts
	// the instruction, and a fork child's stray copies are cleaned with it.
	everBp map[uint64]bpSite
	// failed are the breakpoints of this process that could not be stepped
	// over and were removed from it, with the reason (giveUp). Tracer-owned
	// writes; read by SiteState under failMu (a leaf).
	failMu sync.Mutex
	failed map[uint64]string

	// Tracer-owned; changed only through putThread and delThread.
	threads map[int]*thread
	// selected is the verdict of each filtered inode's filter on this
	// process, asked once (filter.go). Tracer-owned.
	selected map[rmap.InodeKey]bool
	// viewPid is procPid's answer, kept by the tracer, read anywhere.
	viewPid atomic.Int64
	// sigHooks are the internal breakpoints on sigaction functions, by
	// vaddr (sigaction.go). Tracer-owned.
	sigHooks map[uint64]*sigHook
	// sigtrap is the SIGTRAP disposition of each thread group running in
	// this address space, by tgid (sigtrap.go). Tracer-owned.
	sigtrap map[int]*sigTrap
	// pokeMu is a leaf lock guarding pokes, the PTRACE_POKEDATA writes
	// waiting for a thread of the process to stop (poke.go), in order:
	// written by the tracer, read by ReadMemory on any goroutine.
	pokeMu    sync.Mutex
	pokes     []pokeReq
	xol       xolState
	jump      jumpState // jump.go
	detaching bool
	gone      bool
	// rbrk is the vaddr of the internal breakpoint on the loader's
	// _dl_debug_state (0: none), rbrkPlan its step-over plan, rstate the
	// vaddr of r_debug.r_state (0: unknown). See rdebug.go.
	rbrk     uint64
	rbrkPlan *install.Plan
	// startup: a new image whose loader has not yet made its first
	// consistent list; startSwitch: its first jump switch is still to
	// come. For the exec profile (stats.go). Tracer-owned.
	startup, startSwitch bool
	// lazyJump: a new image traced from its exec: its sites become jump
	// sites at their first hit (hits.go makes the trampoline and posts
	// the switch), not while it starts, which a switch would delay by a
	// region's mapping (injected system calls) and a stop of every
	// thread; a site never hit costs it nothing. Set before its MM is
	// published (immutable).
	lazyJump bool
	rbrkSite bpSite
	rstate   uint64
	// expect, when not zero, keeps the process traced until then although
	// it maps no watched inode (it opened a watched library). newproc.go.
	expect time.Time
}

func newProcess(w *World, pid int) (*process, error) {
	p := &process{
		pid:     pid,
		everBp:  map[uint64]bpSite{},
		threads: map[int]*thread{},
	}
	as, err := openAddressSpace(w, p)
	if err != nil {
		return nil, err
	}
	p.as = as
	p.mm = rmap.NewMM(pid, as)
	p.maps = openMapsQuery(pid)
	return p, nil
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
		p.putThread(th)
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
		p.delThread(th.tid)
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
	// Pokes waiting for a thread of p: there is none any more (and their
	// requesters may hold the mmap_sem taken below).
	w.failPokes(p)
	// The address space is gone (exit, exec) or restored (detach):
	// forget the VMAs without writing.
	mm := p.mm
	w.lockMM(mm)
	for _, v := range mm.VMAsLocked() {
		mm.RemoveVMALocked(v)
		w.eng.MunmapHook(v)
	}
	mm.MmapSem.Unlock()
	w.dropJumps(p) // counts flushed; the trampolines stay in the process
	p.as.close()
	p.maps.close()
	if led := w.opts.Ledger; led != nil {
		led.DropOwner(p.pid) // its address space is gone or restored
	}
	if w.procs[p.pid] == p {
		delete(w.procs, p.pid)
		w.nProcs.Add(-1)
	}
	w.checkWaiters()
}

// dropThreadQuiet forgets a thread whose end is not handled as an event:
// with reap, its exit status is still to be reaped.
func (w *World) dropThreadQuiet(th *thread, reap bool) {
	if w.threads[th.tid] == th {
		delete(w.threads, th.tid)
		w.nThreads.Add(-1)
		if reap {
			w.reapable[th.tid] = true
		}
	}
	if th.proc != nil {
		th.proc.delThread(th.tid)
	}
}

// internalBp reports whether va is one of p's internal breakpoints (the
// loader's r_brk, a sigaction hook), not an engine uprobe's.
func (p *process) internalBp(va uint64) bool {
	return (va == p.rbrk && p.rbrk != 0) || p.sigHooks[va] != nil
}

// everSite returns what p's history says was expected at va, and whether
// p ever wrote a breakpoint there.
func (p *process) everSite(va uint64) (bpSite, bool) {
	p.everMu.Lock()
	defer p.everMu.Unlock()
	s, ok := p.everBp[va]
	return s, ok
}

// procPid returns a pid whose /proc files show p's address space: p.pid
// while a thread of that process is traced, else the process of another
// thread of p (a clone(CLONE_VM) or vfork child that outlived it). Any
// goroutine: the tracer keeps the answer in viewPid as threads come and go.
func (p *process) procPid() int {
	if v := int(p.viewPid.Load()); v != 0 {
		return v
	}
	return p.pid
}

// putThread and delThread change p.threads (tracer only) and keep
// viewPid, the answer of procPid, up to date.
func (p *process) putThread(th *thread) {
	p.threads[th.tid] = th
	p.updateView()
}

func (p *process) delThread(tid int) {
	delete(p.threads, tid)
	p.updateView()
}

// updateView recomputes viewPid from p.threads; the tracer calls it again
// when a thread's tgid changes (an exec from a thread).
func (p *process) updateView() {
	other := 0
	for _, th := range p.threads {
		if th.tgid == p.pid {
			p.viewPid.Store(int64(p.pid))
			return
		}
		if other == 0 {
			other = th.tgid
		}
	}
	if other == 0 {
		other = p.pid
	}
	p.viewPid.Store(int64(other))
}

// readMaps reads the maps of p's address space through procPid or, where
// that process is exiting (its maps read empty before the tracer has
// handled its exit: a clone(CLONE_VM) child outliving its parent), through
// another process sharing it. Preconditions: on the tracer thread.
func (p *process) readMaps() ([]procfs.Mapping, error) {
	view := p.procPid()
	ms, err := procfs.ReadMaps(view)
	if err == nil && len(ms) > 0 {
		return ms, nil
	}
	for _, th := range p.threads {
		if th.tgid != view && !th.dead {
			if o, e := procfs.ReadMaps(th.tgid); e == nil && len(o) > 0 {
				return o, nil
			}
		}
	}
	return ms, err
}
