package proc

import (
	"fmt"
	"syscall"
	"time"

	"github.com/uprobefs/uprobefs/core/rmap"

	"golang.org/x/sys/unix"
)

// pokeMemory writes b at vaddr of as's process with PTRACE_POKEDATA on the
// tracer thread, through a stopped thread of the process (one is
// interrupted if none is stopped).
//
// The caller may hold the process's mmap_sem for reading (an engine walk)
// while the tracer wants it for writing (fork, exec, exit, attach, a loader
// stop): the request goes through doPoke, which the tracer serves while it
// waits in lockMM, so neither waits for the other. This path is only used
// where the kernel refuses /proc/PID/mem writes.
func (w *World) pokeMemory(as *addressSpace, vaddr uint64, b []byte) error {
	var err error
	if derr := w.t.doPoke(func() { err = w.pokeOnTracer(as.proc, vaddr, b) }); derr != nil {
		return fmt.Errorf("poke at %#x of pid %d: %w", vaddr, as.pid, syscall.ESRCH)
	}
	return err
}

func (w *World) pokeOnTracer(p *process, vaddr uint64, b []byte) error {
	if p.gone {
		return fmt.Errorf("poke at %#x of pid %d: %w", vaddr, p.pid, syscall.ESRCH)
	}
	var any *thread
	for _, th := range p.threads {
		if th.state == stopped {
			return pokeErr(p, vaddr, pokeWords(th.tid, vaddr, b))
		}
		if any == nil || th.tid == p.pid {
			any = th
		}
	}
	if any == nil {
		return fmt.Errorf("poke at %#x of pid %d: no thread: %w", vaddr, p.pid, syscall.ESRCH)
	}
	th := any
	wasListening := th.state == listening
	if err := ptraceInterrupt(th.tid); err != nil {
		return pokeErr(p, vaddr, err)
	}
	for {
		var st unix.WaitStatus
		_, err := wait4(th.tid, &st, false)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return pokeErr(p, vaddr, err)
		}
		if st.Exited() || st.Signaled() {
			w.event(th.tid, st)
			return fmt.Errorf("poke at %#x of pid %d: %w", vaddr, p.pid, syscall.ESRCH)
		}
		if !st.Stopped() {
			continue
		}
		perr := pokeWords(th.tid, vaddr, b)
		if int(st)>>16 == unix.PTRACE_EVENT_STOP && !isStopSignal(int(st.StopSignal())) {
			// Our interrupt.
			if wasListening {
				ptraceListen(th.tid)
			} else {
				ptraceCont(th.tid, 0)
			}
		} else {
			// Some other stop: handle it as usual (the interrupt
			// stays pending and is reported later).
			th.state = stopped
			w.event(th.tid, st)
		}
		return pokeErr(p, vaddr, perr)
	}
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
// to poke a breakpoint in (pokeMemory), so the tracer serves poke requests
// until the lock is free instead of blocking.
// Preconditions: on the tracer thread.
func (w *World) lockMM(mm *rmap.MM) {
	for !mm.MmapSem.TryLock() {
		if !w.t.servePokes() {
			time.Sleep(20 * time.Microsecond)
		}
	}
}
