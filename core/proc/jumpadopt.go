package proc

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"

	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Jump regions outlive our attachment (a region is never unmapped: a
// signal frame may point into it, and the process may run on through its
// jumps if the daemon dies). When the world attaches to a process again it
// adopts the regions it finds there, by the memfd's name and the header
// in the region's first trampoline slot, and reuses a trampoline whose
// code is the one a site needs (same site, same address, so same code:
// never rewritten), instead of mapping a new region per attach cycle.
//
// The header (slot 0 of the trampolines, never executed):
//
//	0   int3 x8
//	8   "uprobefs-jump-region"
//	64  uint32 used    trampoline slots used, the header's included

var jumpMagic = []byte("uprobefs-jump-region")

const jumpUsedOff = 64

// initJumpHeader writes the header of a new region r.
func initJumpHeader(r *jumpRegion) {
	for i := range 8 {
		r.local[i] = 0xcc
	}
	copy(r.local[8:], jumpMagic)
	r.used = 1
	r.setUsed()
}

// setUsed publishes r.used in the header.
func (r *jumpRegion) setUsed() {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&r.local[jumpUsedOff])), uint32(r.used))
}

// adoptJumpRegions records the regions an earlier attachment left in p.
// Preconditions: on the tracer thread.
func (w *World) adoptJumpRegions(p *process) {
	pid := p.procPid()
	ms, err := procfs.ReadMaps(pid)
	if err != nil {
		return
	}
	for i, m := range ms {
		if !strings.HasPrefix(m.Path, "/memfd:"+string(jumpName[:len(jumpName)-1])) || m.Perms != "r-xs" ||
			m.Off != 0 || m.End-m.Start != jumpCodeSize || i+1 >= len(ms) {
			continue
		}
		c := ms[i+1] // the data, mapped right after
		if c.Start != m.End || c.End-c.Start != jumpDataSize || c.Perms != "rw-s" || c.Off != jumpCodeSize || c.Ino != m.Ino || c.Dev != m.Dev {
			continue
		}
		w.jumpMu.Lock()
		_, claimed := w.jumpInos[m.Ino] // a fork's sharer counts with it
		w.jumpMu.Unlock()
		if claimed {
			continue
		}
		if r := adoptJumpRegion(pid, &m); r != nil {
			r.pid = p.pid
			w.claimRegion(r)
			p.jump.regions = append(p.jump.regions, r)
		}
	}
}

// adoptJumpRegion maps the region whose code mapping is m into the daemon
// (through /proc/PID/map_files) if its header is ours.
func adoptJumpRegion(pid int, m *procfs.Mapping) *jumpRegion {
	f, err := os.OpenFile(procfs.MapFile(pid, m), os.O_RDWR, 0)
	if err != nil {
		return nil // no CAP_SYS_ADMIN (map_files), or gone
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, jumpRegionSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	used := int(binary.LittleEndian.Uint32(mem[jumpUsedOff:]))
	if !bytes.Equal(mem[8:8+len(jumpMagic)], jumpMagic) || used < 1 || used > jumpSlots {
		unix.Munmap(mem)
		return nil
	}
	return &jumpRegion{addr: m.Start, local: mem, used: used, adopted: true, ino: m.Ino}
}

// claimRegion records that r's memfd counts for its process.
func (w *World) claimRegion(r *jumpRegion) {
	w.jumpMu.Lock()
	if w.jumpInos == nil {
		w.jumpInos = map[uint64]bool{}
	}
	w.jumpInos[r.ino] = true
	w.jumpMu.Unlock()
}

// reuseTramp finds, in the adopted regions of p, a trampoline that holds
// the code s needs and no site of p uses, and gives it to s.
// Preconditions: on the tracer thread.
func (w *World) reuseTramp(p *process, s *jumpSite) bool {
	for _, r := range p.jump.regions {
		if !r.adopted || dist(r.addr, s.vaddr) > reach {
			continue
		}
		for i := 1; i < r.used; i++ {
			at := r.addr + uint64(i*trampStride)
			code, err := w.trampCode(r, i, s)
			if err != nil || !bytes.Equal(r.local[i*trampStride:i*trampStride+len(code)], code) || p.trampUsed(at) {
				continue
			}
			w.useSlot(r, i, s)
			return true
		}
	}
	return false
}

// trampUsed reports whether a site of p has the trampoline at at.
func (p *process) trampUsed(at uint64) bool {
	for _, s := range p.jump.sites {
		if s.tramp == at {
			return true
		}
	}
	return false
}

// reclaimStaleJump turns the jmp of a jump site an earlier daemon left at
// vaddr (it died: the guardian leaves live jumps) back into an int3 of
// ours, the way unjumpLocked removes one: the int3 over byte 0, then the
// file's bytes over the jmp's tail (no thread can be inside the range: a
// thread enters it only through byte 0, and those in the old trampoline
// jump back past it). The install hook then finds its breakpoint in
// place. Only a jmp into one of our regions, over the displaced range of
// u's jump plan, is touched. Preconditions: p.mm.MmapSem held.
func (p *process) reclaimStaleJump(vaddr uint64, u *probes.Uprobe) error {
	if u.Arch == nil || u.Arch.Jump == nil {
		return nil
	}
	orig := u.Arch.Jump.Orig
	cur := make([]byte, len(orig))
	if p.as.ReadMemory(vaddr, cur) != nil || cur[0] != 0xe9 || !bytes.Equal(cur[install.JumpLen:], orig[install.JumpLen:]) {
		return nil
	}
	target := vaddr + install.JumpLen + uint64(int64(int32(binary.LittleEndian.Uint32(cur[1:]))))
	ms, err := p.readMaps() // the path (PROCMAP_QUERY gives none here)
	if err != nil {
		return nil
	}
	ours := false
	for _, m := range ms {
		if target >= m.Start && target < m.End {
			ours = strings.HasPrefix(m.Path, "/memfd:"+string(jumpName[:len(jumpName)-1])) && m.Exec()
		}
	}
	if !ours {
		return nil
	}
	if err := p.checkMapped(vaddr, uprobeSite(u)); err != nil {
		return err
	}
	if err := p.as.WriteMemory(vaddr, []byte{install.BreakpointInsn}); err != nil {
		return goneIfFault(err)
	}
	if err := p.as.WriteMemory(vaddr+1, orig[1:install.JumpLen]); err != nil {
		return goneIfFault(err)
	}
	p.as.w.log("pid %d: a jump site left at %#x by an earlier daemon is an int3 again", p.pid, vaddr)
	return nil
}
