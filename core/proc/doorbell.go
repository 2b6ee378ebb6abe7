package proc

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// The doorbell wakes the tracer thread out of its blocking waitid.
//
// The tracer thread blocks in waitid(P_ALL, __WNOTHREAD) so that a trap in a
// tracee wakes it directly (one context switch, no signal delivery through
// the Go runtime). Nothing but a child event ends that wait, so other
// goroutines ring a doorbell: a tiny child process of the tracer thread that
// does nothing but pause(2). Ringing sends it SIGSTOP; its stop is a child
// event of the tracer thread, which wakes up, sends SIGCONT, and only then
// serves the queued requests. That order makes the bell race-free: a request
// queued after the queue was drained rings again after the SIGCONT, which
// stops the child again.
//
// The child is made with Pdeathsig=SIGKILL (it dies with the tracer thread)
// in its own process group (terminal signals do not reach it); it maps only
// a 200-byte static ELF image from a memfd, no library.

// doorbellELF returns a minimal static x86-64 ELF executable whose code is
// "1: mov $34, %eax (pause); syscall; jmp 1b".
func doorbellELF() []byte {
	const base = 0x400000
	code := []byte{0xb8, 34, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7}
	const ehsize, phsize = 64, 56
	b := make([]byte, ehsize+phsize+len(code))
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	le := binary.LittleEndian
	le.PutUint16(b[16:], 2)    // ET_EXEC
	le.PutUint16(b[18:], 0x3e) // EM_X86_64
	le.PutUint32(b[20:], 1)    // EV_CURRENT
	le.PutUint64(b[24:], base+ehsize+phsize)
	le.PutUint64(b[32:], ehsize) // e_phoff
	le.PutUint16(b[52:], ehsize)
	le.PutUint16(b[54:], phsize)
	le.PutUint16(b[56:], 1) // e_phnum
	ph := b[ehsize:]
	le.PutUint32(ph[0:], 1)               // PT_LOAD
	le.PutUint32(ph[4:], 5)               // PF_R|PF_X
	le.PutUint64(ph[8:], 0)               // p_offset
	le.PutUint64(ph[16:], base)           // p_vaddr
	le.PutUint64(ph[24:], base)           // p_paddr
	le.PutUint64(ph[32:], uint64(len(b))) // p_filesz
	le.PutUint64(ph[40:], uint64(len(b))) // p_memsz
	le.PutUint64(ph[48:], 0x1000)         // p_align
	copy(b[ehsize+phsize:], code)
	return b
}

// doorbell is the bell. pid is read by any goroutine (atomically); start and
// the handling of its events run on the tracer thread.
type doorbell struct {
	pid  atomic.Int32
	rung atomic.Bool
}

// start makes the doorbell child. It must run on the tracer thread, whose
// child the doorbell must be.
func (d *doorbell) start() error {
	fd, err := unix.MemfdCreate("uprobefs-doorbell", unix.MFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("doorbell: memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "doorbell")
	defer f.Close()
	if _, err := f.Write(doorbellELF()); err != nil {
		return fmt.Errorf("doorbell: write: %w", err)
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	path := fmt.Sprintf("/proc/self/fd/%d", fd)
	pid, err := syscall.ForkExec(path, []string{"uprobefs-doorbell"}, &syscall.ProcAttr{
		Env:   []string{},
		Files: []uintptr{null.Fd(), null.Fd(), null.Fd()},
		Sys: &syscall.SysProcAttr{
			Pdeathsig: syscall.SIGKILL,
			Setpgid:   true,
		},
	})
	if err != nil {
		return fmt.Errorf("doorbell: exec: %w", err)
	}
	d.pid.Store(int32(pid))
	d.rung.Store(false)
	return nil
}

// ring wakes the tracer thread. Any goroutine may call it.
func (d *doorbell) ring() {
	if d.rung.CompareAndSwap(false, true) {
		if pid := d.pid.Load(); pid > 0 {
			unix.Kill(int(pid), unix.SIGSTOP)
		}
	}
}

// answered is called on the tracer thread when the doorbell's stop was
// reaped: it lets the bell ring again, then continues the child. The caller
// serves the request queue afterwards.
//
// SIGCONT comes first: it discards a pending SIGSTOP, so a ring between
// re-arming and the SIGCONT would be lost and, with rung left true, every
// later ring too (the tracer would sleep for ever). A ring while rung is
// still true is not lost either: its request was queued before, and the
// caller serves the queue after this.
func (d *doorbell) answered() {
	if pid := d.pid.Load(); pid > 0 {
		unix.Kill(int(pid), unix.SIGCONT)
	}
	d.rung.Store(false)
}

// kick rings even if a ring is in flight: a safety net against a lost
// wake-up (an extra stop is harmless).
func (d *doorbell) kick() {
	if pid := d.pid.Load(); pid > 0 {
		unix.Kill(int(pid), unix.SIGSTOP)
	}
}

// stop kills the doorbell child and reaps it. On the tracer thread.
func (d *doorbell) stop() {
	pid := int(d.pid.Swap(0))
	if pid <= 0 {
		return
	}
	unix.Kill(pid, unix.SIGKILL)
	var st unix.WaitStatus
	for {
		_, err := wait4(pid, &st, false)
		if err == unix.EINTR || (err == nil && !st.Exited() && !st.Signaled()) {
			continue
		}
		return
	}
}
