package proc

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
)

// Jump regions and trampolines (see jump.go for the design): a region is
// mapped into the tracee by injected system calls and into the daemon by
// pidfd_getfd; a trampoline is written once into a slot and never again.

// trampFor gives s its trampoline (writing it on first use, mapping a
// region through th when none has room within reach).
// Preconditions: on the tracer thread; th is a stopped thread of p.
func (w *World) trampFor(th *thread, s *jumpSite) error {
	if s.tramp != 0 {
		return nil
	}
	p := th.proc
	if !p.jump.adopted {
		p.jump.adopted = true
		w.adoptJumpRegions(p)
	}
	if w.reuseTramp(p, s) {
		return nil
	}
	var lastErr error
	for i := 0; i <= len(p.jump.regions); i++ {
		var r *jumpRegion
		if i < len(p.jump.regions) {
			r = p.jump.regions[i]
			if r.used >= jumpSlots || dist(r.addr, s.vaddr) > reach {
				continue
			}
		} else {
			nr, err := w.mapJumpRegion(th, s.vaddr)
			if err != nil {
				return err
			}
			p.jump.regions = append(p.jump.regions, nr)
			r = nr
		}
		slot := r.used
		code, err := w.trampCode(r, slot, s)
		if err != nil {
			lastErr = err
			if errors.Is(err, install.ErrSlotRange) {
				continue
			}
			return err
		}
		copy(r.local[slot*trampStride:], code)
		r.used++
		r.setUsed()
		w.useSlot(r, slot, s)
		return nil
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no jump region within reach of %#x", s.vaddr)
	}
	return lastErr
}

// mapJumpRegion makes a jump region near addr in th's process (see the top
// of this file). Preconditions: on the tracer thread; th is stopped.
func (w *World) mapJumpRegion(th *thread, addr uint64) (*jumpRegion, error) {
	p := th.proc
	ms, err := p.readMaps()
	if err != nil {
		return nil, err
	}
	sys, err := w.syscallInsn(p, ms)
	if err != nil {
		return nil, err
	}
	var regs install.Regs
	if err := ptraceGetRegs(th.tid, &regs); err != nil {
		return nil, err
	}
	name := (regs.Rsp - 256) &^ 15 // below the red zone
	if err := p.as.WriteMemory(name, jumpName); err != nil {
		return nil, fmt.Errorf("jump region: write name: %w", err)
	}
	sysErr := func(what string, r uint64) error {
		if e := int64(r); e < 0 && e >= -4095 {
			return fmt.Errorf("jump region: injected %s: %w", what, syscall.Errno(-e))
		}
		return nil
	}
	r, err := w.injectSyscall(th, sys, unix.SYS_MEMFD_CREATE, name, unix.MFD_CLOEXEC)
	if err == nil {
		err = sysErr("memfd_create", r)
	}
	if err != nil {
		return nil, err
	}
	fd := r
	defer w.injectSyscall(th, sys, unix.SYS_CLOSE, fd)
	r, err = w.injectSyscall(th, sys, unix.SYS_FTRUNCATE, fd, jumpRegionSize)
	if err == nil {
		err = sysErr("ftruncate", r)
	}
	if err != nil {
		return nil, err
	}
	at := uint64(0)
	for _, hint := range gapHints(ms, addr, jumpRegionSize) {
		r, err := w.injectSyscall(th, sys, unix.SYS_MMAP, hint, jumpCodeSize,
			unix.PROT_READ|unix.PROT_EXEC, unix.MAP_SHARED|unix.MAP_FIXED_NOREPLACE, fd, 0)
		if err != nil {
			return nil, err
		}
		if e := int64(r); e < 0 && e >= -4095 {
			if syscall.Errno(-e) == syscall.EEXIST {
				continue
			}
			return nil, sysErr("mmap", r)
		}
		if r != hint {
			w.injectSyscall(th, sys, unix.SYS_MUNMAP, r, jumpCodeSize)
			continue
		}
		r, err = w.injectSyscall(th, sys, unix.SYS_MMAP, hint+jumpCodeSize, jumpDataSize,
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED_NOREPLACE, fd, jumpCodeSize)
		if err != nil {
			return nil, err
		}
		if r != hint+jumpCodeSize {
			w.injectSyscall(th, sys, unix.SYS_MUNMAP, hint, jumpCodeSize)
			if int64(r) > 0 {
				w.injectSyscall(th, sys, unix.SYS_MUNMAP, r, jumpDataSize)
			}
			continue
		}
		at = hint
		break
	}
	if at == 0 {
		return nil, fmt.Errorf("no free range within %d MiB of %#x for a jump region", reach>>20, addr)
	}
	local, ino, err := takeMemfd(th.tgid, th.tid, int(fd))
	if err != nil {
		// Mapped in the tracee but not here: leave it (never unmapped),
		// unused.
		return nil, err
	}
	nr := &jumpRegion{addr: at, local: local, ino: ino, pid: p.pid}
	initJumpHeader(nr)
	w.claimRegion(nr)
	return nr, nil
}

// takeMemfd maps the tracee's memfd fd (of thread tid of tgid) into the
// daemon: pidfd_getfd, then mmap of the whole region.
func takeMemfd(tgid, tid, fd int) ([]byte, uint64, error) {
	pidfd, err := unix.PidfdOpen(tid, unix.PIDFD_THREAD)
	if err != nil {
		pidfd, err = unix.PidfdOpen(tgid, 0)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("jump region: pidfd_open: %w", err)
	}
	defer unix.Close(pidfd)
	lfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("jump region: pidfd_getfd: %w", err)
	}
	defer unix.Close(lfd)
	var st unix.Stat_t
	if err := unix.Fstat(lfd, &st); err != nil {
		return nil, 0, fmt.Errorf("jump region: fstat: %w", err)
	}
	mem, err := unix.Mmap(lfd, 0, jumpRegionSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, 0, fmt.Errorf("jump region: mmap: %w", err)
	}
	return mem, st.Ino, nil
}

// slotMem is the events memory of slot i of r, in the tracee.
func (r *jumpRegion) slotMem(i int) install.EvMem {
	return install.EvMem{
		Counter: r.addr + jumpCtrOff + uint64(i*jumpCtrSize),
		Flag:    r.addr + jumpFlagOff + uint64(i*8),
		Head:    r.addr + jumpHeadOff,
		Ring:    r.addr + jumpRingOff,
		Mask:    jumpRingRecs - 1,
		ID:      uint32(i),
	}
}

// trampCode is the code of s's trampoline in slot i of r: with events
// where the kernel lets a process read its fs base (World.evOK).
func (w *World) trampCode(r *jumpRegion, i int, s *jumpSite) ([]byte, error) {
	at := r.addr + uint64(i*trampStride)
	m := r.slotMem(i)
	m.PerCPU = w.perCPU
	if w.evOK {
		code, _, _, err := s.plan.TrampolineEv(s.vaddr, at, m)
		return code, err
	}
	code, _, err := s.plan.Trampoline(s.vaddr, at, m.Counter)
	return code, err
}

// useSlot gives s the trampoline in slot i of r.
// Preconditions: on the tracer thread.
func (w *World) useSlot(r *jumpRegion, i int, s *jumpSite) {
	at := r.addr + uint64(i*trampStride)
	m := r.slotMem(i)
	m.PerCPU = w.perCPU
	var entry, popf int
	if w.evOK {
		_, entry, popf, _ = s.plan.TrampolineEv(s.vaddr, at, m)
		s.ev = &m
	} else {
		_, entry, _ = s.plan.Trampoline(s.vaddr, at, m.Counter)
		popf = entry - 9 // popfq, lea 128(%rsp),%rsp
		s.ev = nil
	}
	w.jumpMu.Lock()
	s.tramp, s.entry, s.popf, s.reg = at, at+uint64(entry), at+uint64(popf), r
	s.ctr = (*uint64)(unsafe.Pointer(&r.local[jumpCtrOff+i*jumpCtrSize]))
	s.flag = (*uint64)(unsafe.Pointer(&r.local[jumpFlagOff+i*8]))
	s.last = s.count()
	if r.sites == nil {
		r.sites = map[uint32]*jumpSite{}
	}
	r.sites[uint32(i)] = s
	w.indexLocked(s)
	w.jumpMu.Unlock()
}
