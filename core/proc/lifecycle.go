package proc

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/internal/procfs"
)

// orphan is a stop reported by a tid before its creator's event announced it.
type orphan struct {
	st   uint32
	when time.Time
}

// newChild handles a clone/fork/vfork event of th announcing tid.
func (w *World) newChild(th *thread, ev, tid int) {
	if w.threads[tid] != nil {
		w.takeOrphan(w.threads[tid])
		return
	}
	p := th.proc
	st, err := procfs.ReadStatus(fmt.Sprintf("/proc/%d/status", tid))
	tgid := tid
	if err == nil && st.Tgid != 0 {
		tgid = st.Tgid
	}
	var c *thread
	switch {
	case p == nil:
		c = w.addThread(nil, tid, tgid)
		c.detach = true
	case tgid == th.tgid || ev == unix.PTRACE_EVENT_VFORK || sameMM(th.tgid, tgid):
		// A thread, a vfork child running in its parent's memory until
		// it execs or exits, or a clone(CLONE_VM) child (reported as a
		// fork when its exit signal is SIGCHLD): all run in p's MM.
		c = w.addThread(p, tid, tgid)
		c.detach = p.detaching
		if ev == unix.PTRACE_EVENT_VFORK && len(th.rets) > 0 {
			// It runs on its parent's stack until it execs or exits:
			// it may return through the parent's probed frames (the
			// kernel's uprobe_copy_process copies them for vfork too).
			c.rets = slices.Clone(th.rets)
		}
		if d := p.trapDisp(th.tgid); d != nil && tgid != th.tgid {
			cp := *d // a vfork child starts with its parent's dispositions
			p.sigtrap[tgid] = &cp
		}
	default:
		c = w.forkChild(th, tid, tgid)
		if c != nil && len(th.rets) > 0 {
			c.rets = slices.Clone(th.rets) // its stack is a copy of th's
		}
	}
	w.takeOrphan(c)
}

// holdFirstStop puts th, a thread just auto-attached (a fork child), into
// the state of its first ptrace-stop and returns that stop's status: taken
// from the orphans if it was reported already, else waited for (an
// auto-attached thread stops at once). It reports false if th died (then
// it is dropped). Preconditions: on the tracer thread.
func (w *World) holdFirstStop(th *thread) (unix.WaitStatus, bool) {
	if o, ok := w.orphans[th.tid]; ok {
		delete(w.orphans, th.tid)
		th.state = stopped
		return unix.WaitStatus(o.st), true
	}
	for {
		var st unix.WaitStatus
		_, err := wait4(th.tid, &st, false)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil || st.Exited() || st.Signaled():
			w.dropThread(th)
			return st, false
		case st.Stopped():
			th.state = stopped
			return st, true
		}
	}
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
	c.jump.adopted = true // its parent's regions are the parent's (jumpadopt.go)
	if d := pp.trapDisp(parent.tgid); d != nil {
		cp := *d // a fork child starts with its parent's dispositions
		c.sigtrap = map[int]*sigTrap{tgid: &cp}
	}
	w.addProcess(c)
	th := w.addThread(c, tid, tgid)
	// The child is held in its first stop while its MM is built, so that
	// the writes that clean its copies of breakpoints may go through it
	// (PTRACE_POKEDATA needs a stopped thread); the stop is handled last.
	first, alive := w.holdFirstStop(th)
	if !alive {
		return th
	}
	defer func() {
		if w.threads[tid] == th && th.state == stopped {
			w.event(tid, first)
		}
	}()
	ms, err := procfs.ReadMaps(tgid)
	if err != nil {
		w.errorf("fork child %d of %d: %v", tgid, pp.pid, err)
	}
	ms = w.selectMappings(c, ms)
	// As Linux's dup_mmap: the parent's mmap_sem (write) is held until
	// the child's MmapHooks are done, so no register/unregister walk of
	// the parent runs in between.
	w.lockMM(pp.mm)
	c.mm.MmapSem.LockNested(1)
	w.cleanJumpCopies(pp, c)
	if err := w.insertMappingsLocked(c, ms); err != nil {
		w.errorf("fork child %d of %d: %v", tgid, pp.pid, err)
	}
	// Stray copies: every address where the parent ever had a breakpoint
	// and the child's engine state has none (removed between the fork
	// and now).
	pp.everMu.Lock()
	ever := make(map[uint64]bpSite, len(pp.everBp))
	for va, s := range pp.everBp {
		ever[va] = s
	}
	pp.everMu.Unlock()
	for va, s := range ever {
		c.everMu.Lock()
		c.everBp[va] = s
		c.everMu.Unlock()
		if !pp.internalBp(va) && w.eng.LookupLocked(c.mm, va) == nil {
			if err := c.writeBreakpointLocked(va, s, false); err != nil && !errors.Is(err, syscall.ESRCH) {
				w.errorf("fork child %d of %d: restore %#x: %v", tgid, pp.pid, va, err)
			}
		}
	}
	// The loader's r_brk was copied too (restored by detachProcess if
	// the child is not kept).
	c.rbrk, c.rbrkPlan, c.rbrkSite, c.rstate = pp.rbrk, pp.rbrkPlan, pp.rbrkSite, pp.rstate
	for va, h := range pp.sigHooks { // copied too
		if c.sigHooks == nil {
			c.sigHooks = map[uint64]*sigHook{}
		}
		c.sigHooks[va] = h
	}
	c.mm.MmapSem.Unlock()
	pp.mm.MmapSem.Unlock()
	if pp.detaching || !w.hasWatched(c) {
		w.detachProcess(c)
	}
	return th
}

// execed handles an exec by th: the old address space is gone; the new
// image is traced if it maps a watched inode, detached otherwise.
func (w *World) execed(th *thread) {
	t0 := time.Now()
	old := th.proc
	msg, err := ptraceGetEventMsg(th.tid)
	if err == nil && int(msg) != th.tid {
		// A non-leader exec'd: it now has the leader's tid (th.tid,
		// the reported one); its former tid is gone.
		if f := w.threads[int(msg)]; f != nil {
			w.dropThreadQuiet(f, false)
		}
	}
	th.tgid = th.tid
	th.shstk = shstkUnknown // a new image enables its own
	th.rets = nil           // and has a new stack
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
		old.delThread(th.tid)
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
	// A new image maps nothing an earlier attachment left: no jump
	// regions or slot pages to look for.
	p.jump.adopted, p.xol.adopted = true, true
	p.lazyJump = true
	w.addProcess(p)
	p.putThread(th)
	th.proc = p
	w.learnSigTrap(p, p.pid, true) // exec reset every handler
	if err := w.addMappings(p); err != nil {
		w.errorf("exec pid %d: %v", p.pid, err)
	}
	if !w.hasWatched(p) {
		w.detachProcess(p)
		return
	}
	p.startup, p.startSwitch = true, true
	spent(&w.execProf.execs, &w.execProf.attach, t0)
	w.resume(th, 0)
}

// adoptOrphans handles stops of auto-attached tids that no creator's event
// announced within orphanAdopt (the creator was killed between the fork and
// its event): a thread joins its process, a child of a traced process is
// made its fork child, anything else is detached.
func (w *World) adoptOrphans() {
	again := false
	defer func() {
		if again {
			w.after(orphanAdopt, w.adoptOrphans)
		}
	}()
	for tid, o := range w.orphans {
		if time.Since(o.when) < orphanAdopt {
			again = true
			continue
		}
		st, err := procfs.PidStatus(tid)
		var th *thread
		switch {
		case err != nil:
			delete(w.orphans, tid)
			continue
		case st.Tgid != tid && w.procs[st.Tgid] != nil:
			th = w.addThread(w.procs[st.Tgid], tid, st.Tgid)
		default:
			var parent *thread
			if pp := w.procs[st.PPid]; pp != nil && !pp.gone {
				for _, t := range pp.threads {
					parent = t
					break
				}
			}
			if parent != nil {
				th = w.forkChild(parent, tid, st.Tgid)
			} else {
				th = w.addThread(nil, tid, st.Tgid)
				th.detach = true
			}
		}
		w.log("tid %d: adopted (no creator's event)", tid)
		w.takeOrphan(th)
	}
}

// expect keeps p traced for expectWindow although it may map no watched
// inode (it opened a watched library, which it maps next).
func (w *World) expect(p *process) {
	armed := !p.expect.IsZero()
	p.expect = time.Now().Add(expectWindow)
	if !armed {
		w.after(expectWindow, func() { w.expectEnd(p) })
	}
	if p.rbrk == 0 {
		if ms, err := p.readMaps(); err == nil {
			w.setRbrk(p, ms)
		}
	}
}

// expecting reports whether p is within its expect window.
func (w *World) expecting(p *process) bool {
	return !p.expect.IsZero() && time.Now().Before(p.expect)
}

// expectEnd ends p's expect window: the maps are read once more, and p is
// detached if it maps no watched inode.
func (w *World) expectEnd(p *process) {
	if p.gone || p.detaching || p.expect.IsZero() {
		return
	}
	if d := time.Until(p.expect); d > 0 {
		w.after(d, func() { w.expectEnd(p) })
		return
	}
	p.expect = time.Time{}
	if err := w.syncMappings(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		w.errorf("pid %d: maps: %v", p.pid, err)
	}
	if !w.hasWatched(p) {
		w.detachProcess(p)
	}
}

// after runs f on the tracer thread after d (not if the world is closed).
func (w *World) after(d time.Duration, f func()) {
	time.AfterFunc(d, func() {
		if !w.closed.Load() {
			w.t.do(f)
		}
	})
}
