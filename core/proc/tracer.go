package proc

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/lockdep"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// ErrClosed is returned by operations on a closed World.
var ErrClosed = errors.New("proc: world closed")

// handler receives the tracer thread's events. All its methods run on the
// tracer thread.
type handler interface {
	// known reports whether tid is a thread the handler traces.
	known(tid int) bool
	// event handles one reaped wait status of a traced thread.
	event(tid int, st unix.WaitStatus)
	// tids returns every traced thread (to poll them one by one).
	tids() []int
	// held reports whether tid is a known thread left in a ptrace-stop.
	held(tid int) bool
	// flush handles the events deferred while serving poke requests.
	flush()
}

// tracer is the one goroutine, locked to its OS thread, from which every
// ptrace request is made (as Delve's handlePtraceFuncs). It blocks in
// waitid for its tracees (see doorbell.go for how other goroutines wake it)
// and runs requests queued by do between events.
type tracer struct {
	h handler

	// tid is the tracer thread's id. Immutable after start.
	tid int

	bell doorbell

	// mu guards reqs, pokes, posts and closed. pokes are requests that
	// the tracer also serves while it waits for an mmap_sem (servePokes);
	// posts are background work (post), run one at a time when no request
	// waits.
	mu     sync.Mutex
	reqs   []func()
	pokes  []func()
	posts  []func()
	closed bool

	// quit is set by a request to end the loop. quit is tracer-owned.
	quit bool
	done chan struct{}

	// foreign counts rounds where waitid peeked at a child that is not a
	// tracee (a child of another thread of this process reparented to the
	// tracer thread): those rounds poll. Tracer-owned.
	foreign int

	// profile: when set, the loop records wake-up times. Tracer-owned.
	profile          bool
	wake, lastResume time.Time
}

// startTracer starts the tracer thread.
func startTracer(h handler) (*tracer, error) {
	t := &tracer{h: h, done: make(chan struct{})}
	errc := make(chan error, 1)
	go t.run(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	return t, nil
}

func (t *tracer) run(errc chan<- error) {
	// The goroutine never unlocks: when it returns, its thread exits with
	// it, which also kills the doorbell (Pdeathsig).
	runtime.LockOSThread()
	defer close(t.done)
	t.tid = unix.Gettid()
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0) // see nap
	if err := t.bell.start(); err != nil {
		errc <- err
		return
	}
	errc <- nil
	t.loop()
	t.bell.stop()
	t.mu.Lock()
	t.closed = true
	reqs := t.reqs
	t.reqs = nil
	t.mu.Unlock()
	for _, f := range reqs {
		f() // requests queued after quit: each sees ErrClosed via its wrapper
	}
}

// onTracer reports whether the caller runs on the tracer thread.
func (t *tracer) onTracer() bool { return unix.Gettid() == t.tid }

// do runs f on the tracer thread and waits for it. It returns ErrClosed if
// the tracer has stopped (f then did not run). On the tracer thread it
// calls f directly.
func (t *tracer) do(f func()) error { return t.enqueue(f, false) }

// doPoke is do for requests whose caller may hold an mmap_sem for reading
// (the PTRACE_POKEDATA fallback of a breakpoint write): besides the loop,
// the tracer serves them while it waits to take an mmap_sem for writing
// (lockMM), so that the two never wait for each other.
func (t *tracer) doPoke(f func()) error { return t.enqueue(f, true) }

func (t *tracer) enqueue(f func(), poke bool) error {
	if t.onTracer() {
		f()
		return nil
	}
	// The wait is a lock for lockdep: the tracer takes mmap_sem (and the
	// engine's locks below it) serving requests, so nothing may be held
	// while waiting for it; poke requests take no lock (servePokes), so
	// they may be waited for under any.
	if poke {
		lockdep.Wait(lockdep.TracerPoke, "tracer poke")
	} else {
		lockdep.Wait(lockdep.Tracer, "tracer")
	}
	done := make(chan bool, 1)
	req := func() {
		if t.quit {
			done <- false
			return
		}
		f()
		done <- true
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	if poke {
		t.pokes = append(t.pokes, req)
	} else {
		t.reqs = append(t.reqs, req)
	}
	t.mu.Unlock()
	t.bell.ring()
	var ok bool
	select {
	case ok = <-done:
	case <-time.After(time.Second):
		// Not served within a second: the tracer may be busy, or
		// asleep after a lost wake-up. Kick the bell (an extra
		// stop is harmless) and keep waiting.
		t.bell.kick()
		ok = <-done
	}
	if !ok {
		return ErrClosed
	}
	return nil
}

// post queues f to run on the tracer thread and returns at once, also
// when called on the tracer thread (f then runs at the loop's next round):
// for callers that may hold locks the tracer takes. Posted work is
// background work (the switch of sites to jumps): it runs in the order
// posted, but only when no request (do) waits, so that a registration's
// thousands of switches do not hold up the next registration or removal.
// f does not run if the tracer stops first.
func (t *tracer) post(f func()) { t.queue(&t.posts, f) }

// postNext is post for work that must run in order with the requests
// (do): it runs before any request queued after it.
func (t *tracer) postNext(f func()) { t.queue(&t.reqs, f) }

// queue appends f to q (t.posts or t.reqs) unless the tracer is closed.
func (t *tracer) queue(q *[]func(), f func()) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	*q = append(*q, func() {
		if !t.quit {
			f()
		}
	})
	t.mu.Unlock()
	t.bell.ring()
}

// stopLoop ends the loop; call it from a request. The loop returns after
// the current round.
func (t *tracer) stopLoop() { t.quit = true }

// servePokes runs the queued poke requests and reports whether there were
// any. A poke request must take no lock (its requester may hold any): the
// stops it reaps are deferred (World.deferEvent), and lockdep checks that
// nothing is taken while it runs.
func (t *tracer) servePokes() bool {
	t.mu.Lock()
	pokes := t.pokes
	t.pokes = nil
	t.mu.Unlock()
	if len(pokes) == 0 {
		return false
	}
	done := lockdep.Hold(lockdep.TracerPoke, "serving a poke")
	for _, f := range pokes {
		f()
	}
	done()
	return true
}

// serve runs the queued requests, and the events deferred meanwhile.
func (t *tracer) serve() {
	for {
		t.servePokes()
		t.h.flush()
		t.mu.Lock()
		reqs := t.reqs
		t.reqs = nil
		var post func()
		if len(reqs) == 0 && len(t.posts) > 0 {
			post = t.posts[0]
			t.posts[0] = nil
			t.posts = t.posts[1:]
		}
		t.mu.Unlock()
		if post != nil {
			post()
			t.h.flush()
			continue
		}
		if len(reqs) == 0 {
			return
		}
		for _, f := range reqs {
			f()
			// The stops a request reaped and deferred (stopThread) are
			// handled before the next request runs: one that detached
			// a thread held at a deferred trap would lose the trap.
			t.h.flush()
		}
	}
}

// CLD_* values of si_code for SIGCHLD and waitid.
const (
	cldExited    = 1
	cldKilled    = 2
	cldDumped    = 3
	cldTrapped   = 4
	cldStopped   = 5
	cldContinued = 6
)

func (t *tracer) loop() {
	var si siginfo
	for !t.quit {
		t.serve()
		if t.quit {
			return
		}
		nohang := t.foreign > 0
		pid, err := waitidPeek(&si, nohang)
		if t.profile {
			t.wake = time.Now()
		}
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.ECHILD:
			// Not even the doorbell: it was reaped. Start another.
			if err := t.bell.start(); err != nil {
				fmt.Fprintf(os.Stderr, "uprobefs: tracer: %v\n", err)
				time.Sleep(10 * time.Millisecond)
			}
			continue
		case err != nil:
			fmt.Fprintf(os.Stderr, "uprobefs: tracer: waitid: %v\n", err)
			time.Sleep(time.Millisecond)
			continue
		}
		if pid == 0 { // nohang, nothing ready
			if !t.pollKnown() {
				time.Sleep(time.Millisecond)
			}
			t.foreign--
			continue
		}
		if pid == int(t.bell.pid.Load()) {
			t.reapBell(pid)
			continue
		}
		if si.code() == cldTrapped && t.h.known(pid) && si.status()>>8 == 0 {
			// A signal-delivery stop of a known tracee (a hit): the
			// peeked siginfo has all of it (si_status is the stop's
			// exit_code), and resuming the tracee ends the stop, so
			// there is nothing to reap: one wait system call per
			// hit. PTRACE_EVENT stops are reaped below: after an
			// exec from a thread other than the leader, every
			// ptrace request on the thread fails with ESRCH until
			// its exec stop has been reaped.
			st := unix.WaitStatus(uint32(si.status())<<8 | 0x7f)
			t.h.event(pid, st)
			if t.h.held(pid) {
				// Left stopped: consume the report so that the
				// next peek does not see it again.
				var st2 unix.WaitStatus
				wait4(pid, &st2, true)
			}
			continue
		}
		if si.code() == cldTrapped || t.h.known(pid) || t.tracedExit(pid, &si) {
			var st unix.WaitStatus
			if r, err := wait4(pid, &st, true); err == nil && r == pid {
				t.h.event(pid, st)
			}
			continue
		}
		// A child of ours that is no tracee, reparented to this thread
		// when the thread that forked it exited: never reap it (its
		// owner will). Poll the tracees for a while instead.
		t.foreign = 100
		t.pollKnown()
	}
}

// tracedExit reports whether an exit event of an unknown pid is one of
// our tracees (an auto-attached child that died before it was announced).
func (t *tracer) tracedExit(pid int, si *siginfo) bool {
	switch si.code() {
	case cldExited, cldKilled, cldDumped:
	default:
		return false
	}
	st, err := procfs.PidStatus(pid)
	return err == nil && st.TracerPid == t.tid // TracerPid names the tracer thread
}

// pollKnown reaps one pending event of each known tracee without blocking
// and reports whether it handled any. Only used while a foreign child
// blocks the peek.
func (t *tracer) pollKnown() bool {
	got := false
	if pid := int(t.bell.pid.Load()); pid > 0 {
		var st unix.WaitStatus
		if r, _ := wait4(pid, &st, true); r == pid {
			t.bellEvent(pid, st)
			got = true
		}
	}
	for _, tid := range t.h.tids() {
		var st unix.WaitStatus
		if r, err := wait4(tid, &st, true); err == nil && r == tid {
			t.h.event(tid, st)
			got = true
		}
	}
	return got
}

func (t *tracer) reapBell(pid int) {
	var st unix.WaitStatus
	if r, err := wait4(pid, &st, true); err == nil && r == pid {
		t.bellEvent(pid, st)
	}
}

func (t *tracer) bellEvent(pid int, st unix.WaitStatus) {
	switch {
	case st.Stopped():
		t.bell.answered()
	case st.Exited() || st.Signaled():
		t.bell.pid.CompareAndSwap(int32(pid), 0)
		if err := t.bell.start(); err != nil {
			fmt.Fprintf(os.Stderr, "uprobefs: tracer: %v\n", err)
		}
	}
}

// close ends the tracer: f runs last on the tracer thread, then the loop
// ends and the doorbell is killed. close waits for the thread to finish.
func (t *tracer) close(f func()) error {
	err := t.do(func() {
		if f != nil {
			f()
		}
		t.stopLoop()
	})
	<-t.done
	return err
}
