package proc

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/lockdep"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// The PTRACE_POKEDATA fallback, for kernels that refuse /proc/PID/mem
// writes (proc_mem.force_override=never). PTRACE_POKEDATA must come from the
// tracer thread and through a thread of the process that is in a
// ptrace-stop. The caller of a write is usually an engine walk holding the
// process's mmap_sem for reading, and the tracer takes mmap_sem for writing
// to handle forks, execs, exits and loader stops, so:
//
//   - a write from another goroutine is a poke request (tracer.doPoke):
//     the tracer queues it on the process (queuePoke) and answers it
//     through the first thread of the process that is stopped — at once if
//     one is, else each thread is interrupted and the request is answered
//     at the next stop the tracer sees, in its loop (event) or while it
//     waits for an mmap_sem (lockMM polls the threads of processes with
//     pending pokes). The tracer never waits for a poke, and serving one
//     takes no lock: the stops it reaps meanwhile are deferred
//     (deferEvent) and handled after, holding no lock (flush).
//   - a write from the tracer thread itself (a fork child's MmapHook, the
//     loader breakpoint of a process attached while fanotify holds it)
//     goes through a stopped thread of the process, or is queued the same
//     way without anyone waiting (pokeNow).

// pokeReq is a pending poke: b at vaddr, the answer on res (buffered).
type pokeReq struct {
	vaddr uint64
	b     []byte
	res   chan error
	async bool // nobody waits for the answer: an error is logged
}

// answer sends the result of req.
func (w *World) answer(p *process, req pokeReq, err error) {
	if err != nil && req.async {
		w.errorf("pid %d: deferred write at %#x: %v", p.pid, req.vaddr, err)
	}
	req.res <- err
}

// pokeMemory writes b at vaddr of as's process with PTRACE_POKEDATA.
func (w *World) pokeMemory(as *addressSpace, vaddr uint64, b []byte) error {
	p := as.proc
	if w.t.onTracer() {
		return w.pokeNow(p, vaddr, b)
	}
	req := pokeReq{vaddr: vaddr, b: b, res: make(chan error, 1)}
	do := w.t.doPoke
	if w.test.plantedPokeAsRequest() {
		do = w.t.do // planted bug: a wait for the tracer under mmap_sem
	}
	if err := do(func() { w.queuePoke(p, req) }); err != nil {
		return fmt.Errorf("poke at %#x of pid %d: %w", vaddr, p.pid, syscall.ESRCH)
	}
	lockdep.Wait(lockdep.TracerPoke, "tracer poke")
	select {
	case err := <-req.res:
		return err
	case <-w.t.done:
		return fmt.Errorf("poke at %#x of pid %d: tracer gone: %w", vaddr, p.pid, syscall.ESRCH)
	}
}

// queuePoke answers req through a stopped thread of p, or queues it and
// interrupts p's threads. Preconditions: on the tracer thread.
func (w *World) queuePoke(p *process, req pokeReq) {
	if p.gone || len(p.threads) == 0 {
		w.answer(p, req, fmt.Errorf("poke at %#x of pid %d: %w", req.vaddr, p.pid, syscall.ESRCH))
		return
	}
	if th := p.stoppedThread(); th != nil {
		w.answer(p, req, pokeErr(p, req.vaddr, pokeWords(th.tid, req.vaddr, req.b)))
		return
	}
	p.pokeMu.Lock()
	first := len(p.pokes) == 0
	p.pokes = append(p.pokes, req)
	p.pokeMu.Unlock()
	if first {
		w.poking[p] = true
		for _, th := range p.threads {
			ptraceInterrupt(th.tid) // ESRCH: exiting; its exit is reported
		}
	}
}

// takePokes removes and returns p's pending pokes.
func (p *process) takePokes() []pokeReq {
	p.pokeMu.Lock()
	defer p.pokeMu.Unlock()
	reqs := p.pokes
	p.pokes = nil
	return reqs
}

// hasPokes reports whether p has pending pokes.
func (p *process) hasPokes() bool {
	p.pokeMu.Lock()
	defer p.pokeMu.Unlock()
	return len(p.pokes) > 0
}

// overlayPokes applies p's pending pokes, in order, to the bytes b read at
// vaddr.
func (p *process) overlayPokes(vaddr uint64, b []byte) {
	p.pokeMu.Lock()
	defer p.pokeMu.Unlock()
	for _, req := range p.pokes {
		lo, hi := max(vaddr, req.vaddr), min(vaddr+uint64(len(b)), req.vaddr+uint64(len(req.b)))
		if lo < hi {
			copy(b[lo-vaddr:hi-vaddr], req.b[lo-req.vaddr:])
		}
	}
}

// runPokes answers p's pending pokes through th, which is in a ptrace-stop.
// Preconditions: on the tracer thread.
func (w *World) runPokes(p *process, th *thread) {
	for _, req := range p.takePokes() {
		w.answer(p, req, pokeErr(p, req.vaddr, pokeWords(th.tid, req.vaddr, req.b)))
	}
	delete(w.poking, p)
}

// failPokes answers p's pending pokes with ESRCH (p is gone).
func (w *World) failPokes(p *process) {
	for _, req := range p.takePokes() {
		req.res <- fmt.Errorf("poke at %#x of pid %d: %w", req.vaddr, p.pid, syscall.ESRCH) // gone: not an error to log
	}
	delete(w.poking, p)
}

// pollPokes answers the pending pokes of each process that has some
// through a thread of it that is stopped: one the tracer holds already, or
// the first whose stop it reaps now without blocking (the stop is deferred).
// A thread the tracer holds is never waited for: its stop may be the one
// being handled, peeked and not yet reaped. It reports whether it answered
// any. Preconditions: on the tracer thread.
func (w *World) pollPokes() bool {
	done := false
	for p := range w.poking {
		if len(p.threads) == 0 {
			w.failPokes(p) // no thread to write through: the process is gone
			done = true
			continue
		}
		if th := p.stoppedThread(); th != nil {
			w.runPokes(p, th)
			done = true
			continue
		}
		for _, th := range p.threads {
			var st unix.WaitStatus
			r, err := wait4(th.tid, &st, true)
			if err != nil || r != th.tid {
				continue
			}
			w.deferEvent(th.tid, st)
			if st.Stopped() {
				th.state = stopped
				// An exec'd thread has a new address space: never
				// write p's memory through it.
				th.execed = int(st)>>16 == unix.PTRACE_EVENT_EXEC
				if !th.execed {
					w.runPokes(p, th)
					done = true
					break
				}
			}
		}
	}
	return done
}

// stoppedThread returns a thread of p in a ptrace-stop that the tracer
// holds, or nil.
func (p *process) stoppedThread() *thread {
	for _, th := range p.threads {
		if th.state == stopped && !th.execed {
			return th
		}
	}
	return nil
}

// pokeNow writes b at vaddr of p from the tracer thread itself: through a
// stopped thread of p at once, or else at p's next stop (the write is
// queued like a poke request, and nobody waits for it: the tracer must not,
// since p may be held by fanotify in an open or exec, where no thread can
// stop until the tracer's handler returns). A write that fails later is
// logged. Preconditions: on the tracer thread.
func (w *World) pokeNow(p *process, vaddr uint64, b []byte) error {
	if p.gone {
		return fmt.Errorf("poke at %#x of pid %d: %w", vaddr, p.pid, syscall.ESRCH)
	}
	if th := p.stoppedThread(); th != nil {
		return pokeErr(p, vaddr, pokeWords(th.tid, vaddr, b))
	}
	w.queuePoke(p, pokeReq{vaddr: vaddr, b: append([]byte(nil), b...), res: make(chan error, 1), async: true})
	return nil
}

// deferredStop is a wait status reaped while serving a poke.
type deferredStop struct {
	tid int
	st  unix.WaitStatus
}

// deferEvent records a wait status reaped while serving a poke, to be
// handled by flush: handling it may need an mmap_sem (a fork, an exit, a
// loader stop), which the requester of the poke may hold.
// Preconditions: on the tracer thread.
func (w *World) deferEvent(tid int, st unix.WaitStatus) {
	w.deferred = append(w.deferred, deferredStop{tid, st})
}

// flush handles the stops deferred while serving pokes. The tracer calls it
// between requests, holding no lock. Preconditions: on the tracer thread.
func (w *World) flush() {
	for len(w.deferred) > 0 {
		d := w.deferred[0]
		w.deferred = w.deferred[1:]
		w.event(d.tid, d.st)
	}
	w.deferred = nil
}

func pokeErr(p *process, vaddr uint64, err error) error {
	switch err {
	case nil:
		return nil
	case unix.ESRCH:
		return fmt.Errorf("poke at %#x of pid %d: %w", vaddr, p.pid, syscall.ESRCH)
	case unix.EIO, unix.EFAULT:
		return fmt.Errorf("poke at %#x of pid %d: %w", vaddr, p.pid, syscall.EFAULT)
	}
	return fmt.Errorf("poke at %#x of pid %d: %w", vaddr, p.pid, err)
}

// lockMM takes mm's mmap_sem for writing on the tracer thread. While an
// engine walk holds it for reading, the walk may be waiting for the tracer
// to poke a breakpoint in (pokeMemory), so the tracer serves poke requests,
// and answers the pending ones at the stops it polls for, until the lock is
// free instead of blocking.
// Preconditions: on the tracer thread.
func (w *World) lockMM(mm *rmap.MM) {
	for !mm.MmapSem.TryLock() {
		served := w.t.servePokes()
		if w.pollPokes() {
			served = true
		}
		if !served {
			nap(20 * time.Microsecond)
		}
	}
}
