package proc

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The tracer's handler: every reaped wait status of a traced thread comes
// here, on the tracer thread.

func (w *World) known(tid int) bool { return w.threads[tid] != nil || w.reapable[tid] }

func (w *World) held(tid int) bool {
	th := w.threads[tid]
	return th != nil && th.state == stopped
}

func (w *World) tids() []int {
	out := make([]int, 0, len(w.threads))
	for tid := range w.threads {
		out = append(out, tid)
	}
	return out
}

// event handles one wait status of a traced thread.
func (w *World) event(tid int, st unix.WaitStatus) {
	th := w.threads[tid]
	if th == nil && w.reapable[tid] {
		// A thread whose end we already accounted for (exec).
		if st.Stopped() {
			ptraceCont(tid, 0)
		} else {
			delete(w.reapable, tid)
		}
		return
	}
	if th == nil {
		if st.Stopped() {
			// An auto-attached child whose creator's event comes
			// later: keep the stop until it is announced.
			if len(w.orphans) == 0 {
				w.after(orphanAdopt, w.adoptOrphans)
			}
			w.orphans[tid] = orphan{st: uint32(st), when: time.Now()}
		}
		return
	}
	if st.Exited() || st.Signaled() {
		w.dropThread(th)
		return
	}
	if !st.Stopped() {
		return
	}
	th.state = stopped
	sig := int(st.StopSignal())
	ev := int(st) >> 16
	if th.detach {
		w.detachStop(th, sig, ev)
		return
	}
	switch ev {
	case 0:
		if sig == int(unix.SIGTRAP) {
			w.trap(th)
			return
		}
		w.resume(th, sig) // a signal: it passes through
	case unix.PTRACE_EVENT_STOP:
		w.eventStop(th, sig)
	case unix.PTRACE_EVENT_CLONE, unix.PTRACE_EVENT_FORK, unix.PTRACE_EVENT_VFORK:
		msg, err := ptraceGetEventMsg(th.tid)
		if err == nil {
			w.newChild(th, ev, int(msg))
		}
		if th.state == stopped && !th.detach {
			w.resume(th, 0)
		}
	case unix.PTRACE_EVENT_EXEC:
		w.execed(th)
	case unix.PTRACE_EVENT_EXIT:
		w.resume(th, 0)
	default:
		w.resume(th, 0)
	}
}

// isStopSignal reports whether sig is one of the job-control stop signals.
func isStopSignal(sig int) bool {
	switch unix.Signal(sig) {
	case unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
		return true
	}
	return false
}

// eventStop handles a PTRACE_EVENT_STOP: a group-stop (job control), which
// must stay stopped until SIGCONT (PTRACE_LISTEN), or a trap stop (the
// first stop of an auto-attached child, PTRACE_INTERRUPT, the re-trap when a
// listening thread is continued), after which it just runs on.
//
// With PTRACE_SEIZE a group-stop is a PTRACE_EVENT_STOP whose signal is the
// stop signal; every other PTRACE_EVENT_STOP has SIGTRAP (the kernel's
// do_jobctl_trap).
func (w *World) eventStop(th *thread, sig int) {
	if isStopSignal(sig) {
		if err := ptraceListen(th.tid); err == nil {
			th.state = listening
			return
		}
	}
	w.resume(th, 0)
}

// resume continues a stopped thread with sig (0: none), delivering first any
// signal held back during a syscall injection.
func (w *World) resume(th *thread, sig int) {
	if len(th.sigs) > 0 {
		if sig != 0 {
			unix.Tgkill(th.tgid, th.tid, unix.Signal(sig))
		}
		sig, th.sigs = th.sigs[0], th.sigs[1:]
		for _, s := range th.sigs {
			unix.Tgkill(th.tgid, th.tid, unix.Signal(s))
		}
		th.sigs = nil
	}
	if err := ptraceCont(th.tid, sig); err != nil {
		if err != unix.ESRCH {
			w.errorf("resume tid %d: %v", th.tid, err)
		}
		// ESRCH: killed meanwhile; its exit will be reported.
	}
	th.state = running
}

// detachStop handles a stop of a thread that is being detached.
func (w *World) detachStop(th *thread, sig, ev int) {
	switch ev {
	case 0:
		if sig == int(unix.SIGTRAP) {
			if w.trapDetach(th) {
				return
			}
		}
		w.detachNow(th, sig)
	case unix.PTRACE_EVENT_CLONE, unix.PTRACE_EVENT_FORK, unix.PTRACE_EVENT_VFORK:
		if msg, err := ptraceGetEventMsg(th.tid); err == nil {
			w.newChild(th, ev, int(msg))
		}
		w.detachNow(th, 0)
	case unix.PTRACE_EVENT_EXEC:
		if !w.closed.Load() {
			// A new image, which may map a watched inode (and was
			// not held at its exec: it was traced).
			th.detach = false
			w.execed(th)
			return
		}
		w.detachNow(th, 0)
	case unix.PTRACE_EVENT_STOP:
		if !isStopSignal(sig) && trapPending(th) {
			// Interrupted after it executed an int3 of ours: the
			// SIGTRAP is queued (a jobctl trap is reported before
			// signals are dequeued). Detached now, the thread would
			// die of it; let it report the SIGTRAP, which
			// trapDetach then handles.
			w.resume(th, 0)
			return
		}
		// Interrupt, group-stop (stays stopped after detach).
		w.detachNow(th, 0)
	default:
		// Exit.
		w.detachNow(th, 0)
	}
}

// trapPending reports whether a SIGTRAP is pending for th itself (SigPnd
// of /proc/TGID/task/TID/status).
func trapPending(th *thread) bool {
	bp := getProcBuf()
	defer putProcBuf(bp)
	b, err := readProcFile(fmt.Sprintf("/proc/%d/task/%d/status", th.tgid, th.tid), bp)
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "SigPnd:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && m&(1<<(unix.SIGTRAP-1)) != 0
		}
	}
	return false
}

// newChild handles a clone/fork/vfork event of th announcing tid.
func (w *World) newChild(th *thread, ev, tid int) {
	if w.threads[tid] != nil {
		w.takeOrphan(w.threads[tid])
		return
	}
	p := th.proc
	st, err := readStatus(fmt.Sprintf("/proc/%d/status", tid))
	tgid := tid
	if err == nil && st.Tgid != 0 {
		tgid = st.Tgid
	}
	var c *thread
	switch {
	case p == nil:
		c = w.addThread(nil, tid, tgid)
		c.detach = true
	case tgid == th.tgid || ev == unix.PTRACE_EVENT_VFORK:
		// A thread, or a vfork child running in its parent's memory
		// until it execs or exits: both run in p's MM.
		c = w.addThread(p, tid, tgid)
		c.detach = p.detaching
	default:
		c = w.forkChild(th, tid, tgid)
	}
	w.takeOrphan(c)
}

// takeOrphan handles the stop th reported before it was announced.
func (w *World) takeOrphan(th *thread) {
	o, ok := w.orphans[th.tid]
	if !ok {
		return
	}
	delete(w.orphans, th.tid)
	w.event(th.tid, unix.WaitStatus(o.st))
}

// forkChild builds the process of a fork child: its memory is a copy of
// its parent's, breakpoints included. Its MM gets the VMAs of its maps
// (MmapHook finds the breakpoints there: EEXIST), and copies of
// breakpoints the engine no longer has (removed between the fork and now)
// are restored. Preconditions: the parent thread is stopped at the event.
func (w *World) forkChild(parent *thread, tid, tgid int) *thread {
	pp := parent.proc
	c, err := newProcess(w, tgid)
	if err != nil {
		// Cannot write its memory: detach it as it is (it may carry
		// copies of breakpoints; log it).
		w.errorf("fork child %d of %d: %v", tgid, pp.pid, err)
		th := w.addThread(nil, tid, tgid)
		th.detach = true
		return th
	}
	c.xol = pp.xol.clone()
	w.addProcess(c)
	th := w.addThread(c, tid, tgid)
	ms, err := readMaps(tgid)
	if err != nil {
		w.errorf("fork child %d of %d: %v", tgid, pp.pid, err)
	}
	// As Linux's dup_mmap: the parent's mmap_sem (write) is held until
	// the child's MmapHooks are done, so no register/unregister walk of
	// the parent runs in between.
	w.lockMM(pp.mm)
	c.mm.MmapSem.LockNested(1)
	if err := w.insertMappingsLocked(c, ms); err != nil {
		w.errorf("fork child %d of %d: %v", tgid, pp.pid, err)
	}
	// Stray copies: every address where the parent ever had a breakpoint
	// and the child's engine state has none (removed between the fork
	// and now).
	pp.bpMu.Lock()
	ever := make(map[uint64]byte, len(pp.everBp))
	for va, b := range pp.everBp {
		ever[va] = b
	}
	pp.bpMu.Unlock()
	for va, orig := range ever {
		c.bpMu.Lock()
		_, has := c.bps[va]
		c.everBp[va] = orig
		c.bpMu.Unlock()
		if !has && (va != pp.rbrk || pp.rbrk == 0) {
			restoreByte(c.as, va, orig)
		}
	}
	// The loader's r_brk was copied too (restored by detachProcess if
	// the child is not kept).
	c.rbrk, c.rbrkPlan, c.rstate = pp.rbrk, pp.rbrkPlan, pp.rstate
	c.mm.MmapSem.Unlock()
	pp.mm.MmapSem.Unlock()
	if pp.detaching || !w.hasWatched(c) {
		w.detachProcess(c)
	}
	return th
}

// restoreByte writes orig at va if an int3 is there.
func restoreByte(as *addressSpace, va uint64, orig byte) {
	var b [1]byte
	if as.ReadMemory(va, b[:]) == nil && b[0] == 0xcc && orig != 0xcc {
		b[0] = orig
		as.WriteMemory(va, b[:])
	}
}

// execed handles an exec by th: the old address space is gone; the new
// image is traced if it maps a watched inode, detached otherwise.
func (w *World) execed(th *thread) {
	old := th.proc
	if msg, err := ptraceGetEventMsg(th.tid); err == nil && int(msg) != th.tid {
		// A non-leader exec'd: it now has the leader's tid (th.tid,
		// the reported one); its former tid is gone.
		if f := w.threads[int(msg)]; f != nil {
			w.dropThreadQuiet(f, false)
		}
	}
	th.tgid = th.tid
	if th.pend != nil {
		w.endPending(th)
	}
	if old != nil {
		// Every other thread of the old image is gone (or going).
		for _, o := range old.threads {
			if o != th && o.tgid == th.tgid {
				w.dropThreadQuiet(o, true)
			}
		}
		delete(old.threads, th.tid)
		if len(old.threads) == 0 {
			w.dropProcess(old)
		}
	}
	th.proc = nil
	if w.closed.Load() {
		w.detachNow(th, 0)
		return
	}
	p, err := newProcess(w, th.tgid)
	if err != nil {
		w.detachNow(th, 0)
		return
	}
	if q := w.procs[p.pid]; q != nil && q != old {
		// A stale process of this pid (cannot happen normally).
		w.dropProcess(q)
	}
	w.addProcess(p)
	p.threads[th.tid] = th
	th.proc = p
	if err := w.addMappings(p); err != nil {
		w.errorf("exec pid %d: %v", p.pid, err)
	}
	if !w.hasWatched(p) {
		w.detachProcess(p)
		return
	}
	w.resume(th, 0)
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
		delete(th.proc.threads, th.tid)
	}
}
