package proc

import (
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/internal/procfs"
)

// checkAttachable checks that pid may be seized.
func (w *World) checkAttachable(pid int) error {
	self := os.Getpid()
	if pid == self || pid == 1 || pid == int(w.t.bell.pid.Load()) {
		return fmt.Errorf("pid %d: never traced", pid)
	}
	st, err := procfs.PidStatus(pid)
	if err != nil {
		return fmt.Errorf("pid %d: %w", pid, syscall.ESRCH)
	}
	if st.Tgid != pid {
		return fmt.Errorf("pid %d: not a process", pid)
	}
	if st.PPid == self {
		return fmt.Errorf("pid %d: %w", pid, ErrOwnChild)
	}
	if st.TracerPid == w.t.tid {
		// Auto-attached (a fork child) and not announced yet.
		return fmt.Errorf("pid %d: traced already: %w", pid, syscall.ESRCH)
	}
	if st.TracerPid != 0 {
		return fmt.Errorf("pid %d: already traced by %s", pid, tracerName(st.TracerPid))
	}
	return nil
}

// attach seizes every thread of pid, and of every other process sharing
// its address space (clone(CLONE_VM) without CLONE_THREAD, vfork), and
// builds their one MM: all of them are seized before the first breakpoint
// goes into the shared memory, since a breakpoint is hit by whichever of
// them runs there. The sharers are looked for among cands (the processes
// a scan found mapping a watched file, grouped by address space: sharers
// map it too), or among every process of /proc when cands is nil; the
// scan's maps of pid stand for its maps if they are still right
// (addScanned).
// Preconditions: on the tracer thread; pid not traced by us.
func (w *World) attach(pid int, cands *scanned) (*process, error) {
	self := w.t.tid // TracerPid names the tracer thread
	if err := w.checkAttachable(pid); err != nil {
		return nil, err
	}
	if err := ptraceSeize(pid); err != nil {
		if err == unix.ESRCH {
			return nil, fmt.Errorf("pid %d: %w", pid, syscall.ESRCH)
		}
		if st2, e := procfs.PidStatus(pid); e == nil && st2.TracerPid == self {
			// Auto-attached (a fork child) and not announced yet.
			return nil, fmt.Errorf("pid %d: traced already: %w", pid, syscall.ESRCH)
		} else if e == nil && st2.TracerPid != 0 {
			return nil, fmt.Errorf("pid %d: already traced by %s (%v)", pid, tracerName(st2.TracerPid), err)
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
	w.learnSigTrap(p, pid, false) // before the first breakpoint
	// A vfork child (posix_spawn's), made by a thread now blocked until
	// it execs, runs in this memory: the children of the seized threads
	// are candidates too, found once no clone begun before the seizure
	// (whose child is untraced) is under way.
	w.settleClones(p, pid)
	var extra []int
	if cands != nil {
		extra = childrenOf(pid)
	}
	for _, m := range w.sharers(pid, cands, extra) {
		if err := ptraceSeize(m); err != nil {
			w.errorf("pid %d shares the address space of pid %d but cannot be attached (%v): its breakpoints stay out", m, pid, err)
			w.detachProcess(p)
			return nil, fmt.Errorf("pid %d: a process sharing its memory (pid %d) cannot be attached: %w", pid, m, err)
		}
		w.addThread(p, m, m)
		w.seizeThreads(m, func(tid int) { w.addThread(p, tid, m) })
		w.learnSigTrap(p, m, false)
	}
	var ms []procfs.Mapping
	if cands != nil {
		ms = cands.maps[pid]
	}
	if err := w.addScanned(p, ms); err != nil {
		w.errorf("attach pid %d: %v", pid, err)
	}
	return p, nil
}

// sharers returns the processes that share pid's address space and are not
// traced yet: among pid's group in cands and among extra, or among every
// process of /proc if cands has no groups. The address space is compared first
// (one kcmp), the attachability of a sharer after.
// Preconditions: on the tracer thread.
func (w *World) sharers(pid int, cands *scanned, extra []int) []int {
	var look []int
	if cands == nil || cands.of == nil {
		look, _ = procfs.ListPids()
	} else {
		look = append(cands.of[pid][:len(cands.of[pid]):len(cands.of[pid])], extra...)
	}
	var out []int
	seen := make(map[int]bool, len(look))
	for _, c := range look {
		if c == pid || seen[c] || w.threads[c] != nil {
			continue
		}
		seen[c] = true
		if sameMM(pid, c) && w.checkAttachable(c) == nil {
			out = append(out, c)
		}
	}
	return out
}

// scanned is what a scan of /proc learned about the processes that map a
// watched file: of maps each process that shares its address space with
// another of them to the whole group (groupByMM; nil if the grouping gave
// up), maps each one's maps as the scan read them. Sharing without being threads of one process
// (CLONE_VM without CLONE_THREAD, vfork) is rare; grouping once costs
// O(n log n) kcmp calls where asking each process about every other
// costs n².
type scanned struct {
	of   map[int][]int
	maps map[int][]procfs.Mapping
}

// newScanned groups the pids a scan found (with their maps).
func newScanned(pids []int, maps map[int][]procfs.Mapping) *scanned {
	return &scanned{of: groupByMM(pids), maps: maps}
}

// groupByMM groups pids by address space: kcmp(KCMP_VM) orders address
// spaces, so a sort brings sharers together. A process that ends during
// the sort (kcmp fails) would make the order inconsistent: the sorted
// order is checked pair by pair and the sort redone without the dead. nil
// if the processes keep ending.
func groupByMM(pids []int) map[int][]int {
	ps := append([]int(nil), pids...)
	for try := 0; try < 3; try++ {
		bad := false
		sort.SliceStable(ps, func(i, j int) bool {
			o, ok := kcmpVM(ps[i], ps[j])
			bad = bad || !ok
			return ok && o < 0
		})
		g := map[int][]int{}
		start := 0
		for i := 1; i <= len(ps) && !bad; i++ {
			if i < len(ps) {
				o, ok := kcmpVM(ps[i-1], ps[i])
				if !ok || o > 0 {
					bad = true
					break
				}
				if o == 0 {
					continue
				}
			}
			if i-start > 1 {
				grp := ps[start:i:i]
				for _, m := range grp {
					g[m] = grp
				}
			}
			start = i
		}
		if !bad {
			return g
		}
		live := ps[:0]
		for _, p := range ps {
			if _, ok := kcmpVM(p, p); ok {
				live = append(live, p)
			}
		}
		ps = live
	}
	return nil // keeps changing: every process is asked (sharers)
}

// settleCloneWait bounds settleClones' wait for the stops of threads that
// may be inside a clone.
const settleCloneWait = 50 * time.Millisecond

// childrenOf returns the children of every thread of pid.
func childrenOf(pid int) []int {
	tids, _ := procfs.ListTasks(pid)
	var out []int
	for _, tid := range tids {
		cs, _ := procfs.Children(pid, tid)
		out = append(out, cs...)
	}
	return out
}

// settleClones waits, briefly, until no thread of p (whose process pid
// was just seized) is inside a clone it began before its seizure: the
// kernel decides at a clone's start whether the child is traced, so such
// a child is not, and is not among its parent's children until the clone
// is done. A thread that is running or blocked in a clone, fork or vfork
// is interrupted and its stop awaited (it is deferred to the event loop);
// a vfork parent does not stop before its child execs, but its child
// exists by then. Threads in other system calls or in user space cannot be
// inside a clone. Preconditions: on the tracer thread; p's threads of pid
// seized and not stopped yet.
func (w *World) settleClones(p *process, pid int) {
	var wait []*thread
	for _, th := range p.threads {
		if th.tgid != pid || th.state != running {
			continue
		}
		nr, run, err := procfs.TaskSyscall(pid, th.tid)
		if err != nil || !run && nr != unix.SYS_CLONE && nr != unix.SYS_CLONE3 && nr != unix.SYS_FORK && nr != unix.SYS_VFORK {
			continue
		}
		if ptraceInterrupt(th.tid) == nil {
			wait = append(wait, th)
		}
	}
	w.awaitStops(wait, settleCloneWait)
}

// sameMM reports whether the processes a and b share one address space
// (kcmp KCMP_VM).
func sameMM(a, b int) bool {
	o, ok := kcmpVM(a, b)
	return ok && o == 0
}

// kcmpVM orders the address spaces of a and b (kcmp KCMP_VM): -1, 0 (the
// same) or 1; ok is false if either process is gone.
func kcmpVM(a, b int) (order int, ok bool) {
	const kcmpVMType = 1
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(a), uintptr(b), kcmpVMType, 0, 0, 0)
	if e != 0 {
		return 0, false
	}
	switch r {
	case 0:
		return 0, true
	case 1:
		return -1, true
	}
	return 1, true
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
		tids, err := procfs.ListTasks(pid)
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
				if s, e := procfs.ReadStatus(fmt.Sprintf("/proc/%d/task/%d/status", pid, tid)); e == nil && s.TracerPid == self {
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

// pendExec is a process seized at its exec, before its exec event.
type pendExec struct {
	pid int
}

// attachExec seizes every thread of pid, which is blocked in an exec of a
// watched file; its exec event builds its process (execed).
// Preconditions: on the tracer thread; pid not traced by us.
func (w *World) attachExec(pid int) error {
	if err := w.checkAttachable(pid); err != nil {
		return err
	}
	if err := ptraceSeize(pid); err != nil {
		if err == unix.ESRCH {
			return fmt.Errorf("pid %d: %w", pid, syscall.ESRCH)
		}
		return fmt.Errorf("pid %d: cannot attach: %w", pid, err)
	}
	pe := &pendExec{pid: pid}
	w.pending[pid] = pe
	w.addThread(nil, pid, pid).pend = pe
	w.seizeThreads(pid, func(tid int) { w.addThread(nil, tid, pid).pend = pe })
	w.after(pendExecTimeout, func() { w.expirePending(pe) })
	return nil
}

// expirePending detaches the threads of pe if its exec event never came.
func (w *World) expirePending(pe *pendExec) {
	if w.pending[pe.pid] != pe {
		return
	}
	delete(w.pending, pe.pid)
	for _, th := range w.threads {
		if th.pend == pe {
			th.pend = nil
			w.detachThread(th)
		}
	}
}

// endPending forgets the pending exec of th (its exec event came): the
// other threads seized with it are gone with the old image.
func (w *World) endPending(th *thread) {
	pe := th.pend
	th.pend = nil
	if w.pending[pe.pid] == pe {
		delete(w.pending, pe.pid)
	}
	for _, o := range w.threads {
		if o != th && o.pend == pe {
			o.pend = nil
			w.dropThreadQuiet(o, true)
		}
	}
}
