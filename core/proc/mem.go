package proc

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// addressSpace is a traced process's memory, the rmap.AddressSpace (and
// install.Memory) of its MM. It reads and writes through /proc/PID/mem,
// which any goroutine may use concurrently: text is private copy-on-write
// and the kernel writes it with FOLL_FORCE, so the file on disk never
// changes. Where the kernel refuses such writes (booted with
// proc_mem.force_override=never), writes fall back to PTRACE_POKEDATA on the
// tracer thread.
//
// Errors wrap syscall.ESRCH once the address space is gone (the process
// exited or exec'd: the open file keeps referring to the old mm) and
// syscall.EFAULT for an unmapped address.
type addressSpace struct {
	// pid is immutable.
	pid int
	// proc is the process whose memory this is. Immutable.
	proc *process
	// w is the world (for the POKEDATA fallback). Immutable.
	w *World

	// mu guards fd against close: readers and writers hold it for
	// reading, close for writing.
	mu sync.RWMutex
	fd int // -1 once closed

	// poke makes writes use PTRACE_POKEDATA. Accessed atomically.
	poke atomic.Bool
}

func openAddressSpace(w *World, p *process) (*addressSpace, error) {
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/mem", p.pid), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /proc/%d/mem: %w", p.pid, err)
	}
	as := &addressSpace{pid: p.pid, proc: p, w: w, fd: fd}
	if w.opts.ForcePokeData {
		as.poke.Store(true)
	}
	return as, nil
}

// close closes the /proc/PID/mem file; later calls fail with ESRCH.
func (as *addressSpace) close() {
	as.mu.Lock()
	if as.fd >= 0 {
		unix.Close(as.fd)
		as.fd = -1
	}
	as.mu.Unlock()
}

// ReadMemory reads len(p) bytes at vaddr, as they will be once the
// PTRACE_POKEDATA writes still pending (poke.go) are done: a verify-opcode
// read must see the breakpoint a pending write puts in.
func (as *addressSpace) ReadMemory(vaddr uint64, p []byte) error {
	if !as.proc.batches.read(vaddr, p) {
		if err := as.pread(vaddr, p); err != nil {
			return err
		}
	}
	as.proc.overlayPokes(vaddr, p)
	return nil
}

func (as *addressSpace) pread(vaddr uint64, p []byte) error {
	as.mu.RLock()
	defer as.mu.RUnlock()
	if as.fd < 0 {
		return fmt.Errorf("read at %#x of pid %d: address space closed: %w", vaddr, as.pid, syscall.ESRCH)
	}
	for len(p) > 0 {
		n, err := unix.Pread(as.fd, p, int64(vaddr))
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EIO || err == unix.EFAULT:
			return fmt.Errorf("read at %#x of pid %d: %w", vaddr, as.pid, syscall.EFAULT)
		case err != nil:
			return fmt.Errorf("read at %#x of pid %d: %w", vaddr, as.pid, err)
		case n == 0:
			return fmt.Errorf("read at %#x of pid %d: address space gone: %w", vaddr, as.pid, syscall.ESRCH)
		}
		p = p[n:]
		vaddr += uint64(n)
	}
	return nil
}

// WriteMemory writes p at vaddr: with the lock of the process's runs of
// breakpoint writes held, so that none writes back older bytes over it
// (textbatch.go), unless it falls back to PTRACE_POKEDATA.
func (as *addressSpace) WriteMemory(vaddr uint64, p []byte) error {
	if !as.poke.Load() && as.proc.batches.writeThrough(vaddr, p, as.pwrite) {
		return nil
	}
	err := as.write(vaddr, p)
	if err == nil {
		as.proc.batches.wrote(vaddr, p)
	}
	return err
}

// deferMem is the memory process.install writes its int3 through: into a
// run's copy, written back when the run ends (textbatch.go), where a run
// covers it.
type deferMem struct{ *addressSpace }

func (d deferMem) WriteMemory(vaddr uint64, p []byte) error {
	if len(p) == 1 && !d.poke.Load() && d.proc.batches.deferByte(vaddr, p[0]) {
		return nil
	}
	return d.addressSpace.WriteMemory(vaddr, p)
}

// pwrite writes p at vaddr through /proc/PID/mem, with no fallback: the
// raw error.
func (as *addressSpace) pwrite(vaddr uint64, p []byte) error {
	_, err := as.pwriteN(vaddr, p)
	return err
}

// pwriteN is pwrite, also saying how many bytes were written.
func (as *addressSpace) pwriteN(vaddr uint64, p []byte) (int, error) {
	as.mu.RLock()
	defer as.mu.RUnlock()
	if as.fd < 0 {
		return 0, fmt.Errorf("write at %#x of pid %d: address space closed: %w", vaddr, as.pid, syscall.ESRCH)
	}
	done := 0
	for done < len(p) {
		n, err := unix.Pwrite(as.fd, p[done:], int64(vaddr)+int64(done))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, syscall.ESRCH
		}
		done += n
	}
	return done, nil
}

func (as *addressSpace) write(vaddr uint64, p []byte) error {
	if as.poke.Load() {
		return as.w.pokeMemory(as, vaddr, p)
	}
	n, werr := as.pwriteN(vaddr, p)
	q, a := p[n:], vaddr+uint64(n)
	switch {
	case werr == nil:
		return nil
	case werr == syscall.ESRCH:
		return fmt.Errorf("write at %#x of pid %d: address space gone: %w", a, as.pid, syscall.ESRCH)
	case werr == unix.EIO || werr == unix.EPERM || werr == unix.EFAULT:
		// EIO is both "not mapped" and "FOLL_FORCE refused": if the
		// memory reads fine, the write was refused; fall back to
		// PTRACE_POKEDATA from now on.
		var b [1]byte
		if rerr := as.ReadMemory(a, b[:]); rerr != nil {
			return rerr
		}
		as.poke.Store(true)
		as.w.log("pid %d: /proc/PID/mem refuses writes (%v): falling back to PTRACE_POKEDATA", as.pid, werr)
		return as.w.pokeMemory(as, a, q)
	}
	return fmt.Errorf("write at %#x of pid %d: %w", a, as.pid, werr)
}

// pokeWords writes p at vaddr with PTRACE_POKEDATA through the stopped
// thread tid, a word at a time (read-modify-write at the edges).
// Preconditions: on the tracer thread; tid is in a ptrace-stop.
func pokeWords(tid int, vaddr uint64, p []byte) error {
	for len(p) > 0 {
		base := vaddr &^ 7
		off := int(vaddr - base)
		n := min(8-off, len(p))
		var w [8]byte
		if off != 0 || n != 8 {
			v, err := ptracePeekData(tid, uintptr(base))
			if err != nil {
				return err
			}
			binary.LittleEndian.PutUint64(w[:], v)
		}
		copy(w[off:], p[:n])
		if err := ptracePokeData(tid, uintptr(base), binary.LittleEndian.Uint64(w[:])); err != nil {
			return err
		}
		p = p[n:]
		vaddr += uint64(n)
	}
	return nil
}
