package proc

import (
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// userMem is a process's data memory as the process itself sees it, for
// the emulation of its instructions (push, call, ret, jmp *mem): read and
// written with process_vm_readv/writev, which honour the page protections.
// /proc/PID/mem does not (it reads PROT_NONE pages and writes read-only
// ones: FOLL_FORCE), so an emulated ret from a PROT_NONE stack read zeros
// and jumped to 0 where the program would have faulted. An access that
// would fault natively fails here (EFAULT), and the instruction's fault is
// then made for real (slotsig.go).
type userMem struct{ pid int }

func (m userMem) ReadMemory(vaddr uint64, p []byte) error {
	return m.xfer(vaddr, p, false)
}

func (m userMem) WriteMemory(vaddr uint64, p []byte) error {
	return m.xfer(vaddr, p, true)
}

func (m userMem) xfer(vaddr uint64, p []byte, write bool) error {
	local := []unix.Iovec{{Base: unsafe.SliceData(p), Len: uint64(len(p))}}
	remote := []unix.RemoteIovec{{Base: uintptr(vaddr), Len: len(p)}}
	var n int
	var err error
	if write {
		n, err = unix.ProcessVMWritev(m.pid, local, remote, 0)
	} else {
		n, err = unix.ProcessVMReadv(m.pid, local, remote, 0)
	}
	if err == nil && n != len(p) {
		err = syscall.EFAULT // partly mapped: the access faults
	}
	if err != nil {
		return fmt.Errorf("pid %d: %#x: %w", m.pid, vaddr, err)
	}
	return nil
}

// ReadAt reads len(p) bytes at vaddr off as the process sees them: it
// returns how many it read before the first that cannot be (a fault), and
// an error if that is fewer than len(p) (io.ReaderAt, for fetch
// arguments: probes.Hit.Mem).
func (m userMem) ReadAt(p []byte, off int64) (int, error) {
	local := []unix.Iovec{{Base: unsafe.SliceData(p), Len: uint64(len(p))}}
	remote := []unix.RemoteIovec{{Base: uintptr(off), Len: len(p)}}
	n, err := unix.ProcessVMReadv(m.pid, local, remote, 0)
	if n < 0 {
		n = 0
	}
	if err == nil && n < len(p) {
		err = syscall.EFAULT // it stops at the first page it cannot read
	}
	return n, err
}
