package proc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Out-of-line execution (XOL) slots.
//
// A process gets its first slot page when a slotted breakpoint is first hit
// in it: the tracer injects an mmap system call into the trapping thread
// (which is stopped anyway) asking for one r-x anonymous page with
// MAP_FIXED_NOREPLACE just below a mapping near the probed code, so that
// RIP-relative operands stay within ±2 GiB. The page starts with
// "syscall; int3" (for later injections) and a magic string; slots of
// install.MaxSlotSize bytes follow. Slot code is written through
// /proc/PID/mem like breakpoints. A slot is never rewritten while it may
// run: a changed instruction gets a new slot.
//
// Pages are never unmapped: a thread may have been interrupted by a signal
// while running a slot, its saved context (on its stack) pointing into the
// page; unmapping would crash it when the handler returns, and there is no
// way to know. Like the kernel's [uprobes] XOL area, the page lives as long
// as the address space: one page (4 KiB, 62 slots) per process and per
// region of ±2 GiB with probes.

// The layout of a slot page:
//
//	0    syscall; int3 x6        the injection point (syscallInsn)
//	8    "uprobefs-xol-page"     the magic by which a later attach finds it
//	64   uint32 used             slots written so far (never rewritten)
//	128  slot 0, slot 1, ...     install.MaxSlotSize bytes each
//
// A page outlives our attachment (see above): when the world attaches to a
// process again, it adopts the pages it finds by their magic and reuses a
// slot whose code is the one it needs (same instruction, same address),
// instead of mapping a new page per attach cycle.
const (
	xolPageSize = 4096
	xolUsedOff  = 64
	xolHeader   = 128 // syscall; int3; magic; used; then slots
	xolSlots    = (xolPageSize - xolHeader) / install.MaxSlotSize
)

var xolMagic = []byte("uprobefs-xol-page")

type xolPage struct {
	addr uint64
	used int // slots used
}

type xolSlot struct {
	addr uint64
	plan *install.Plan
	code []byte
}

// xolState is a process's slot pages. Tracer-owned.
type xolState struct {
	pages []xolPage
	slots map[uint64]xolSlot // by breakpoint vaddr
	// tramp is the return trampoline's address (uretprobe.go), 0: none
	// yet.
	tramp uint64
	// faults are the fault-code slots (slotsig.go), branches the
	// branch slots (shstk.go), by breakpoint vaddr.
	faults, branches map[uint64]xolSlot
	// origin tells, for every slot written or reused in this attachment,
	// which instruction it runs (slotsig.go): by slot address.
	origin map[uint64]slotOrigin
	// adopted: the pages left by an earlier attachment were looked for;
	// old are the slots found in them (code only), for reuse.
	adopted bool
	old     []xolSlot
}

// clone copies x for a fork child (same addresses, same contents).
func (x xolState) clone() xolState {
	c := xolState{pages: append([]xolPage(nil), x.pages...), adopted: x.adopted, old: append([]xolSlot(nil), x.old...), tramp: x.tramp}
	c.slots = maps.Clone(x.slots)
	c.faults = maps.Clone(x.faults)
	c.branches = maps.Clone(x.branches)
	c.origin = maps.Clone(x.origin)
	return c
}

// reach is how far from a breakpoint a slot page is placed at most.
const reach = 1 << 30

// slotFor returns the address of the slot holding plan's instruction from
// addr, writing it (and mapping a page through th) on first use.
// Preconditions: on the tracer thread; th is stopped.
func (w *World) slotFor(th *thread, addr uint64, plan *install.Plan) (uint64, error) {
	p := th.proc
	x := &p.xol
	if s, ok := x.slots[addr]; ok {
		if s.plan == plan {
			return s.addr, nil
		}
		if code, err := plan.SlotCode(addr, s.addr); err == nil && bytes.Equal(code, s.code) {
			s.plan = plan
			x.slots[addr] = s
			x.noteSlot(s.addr, addr, plan, false)
			return s.addr, nil
		}
	}
	slot, code, err := w.allocSlot(th, addr, func(a uint64) ([]byte, error) { return plan.SlotCode(addr, a) })
	if err != nil {
		return 0, err
	}
	if x.slots == nil {
		x.slots = map[uint64]xolSlot{}
	}
	x.slots[addr] = xolSlot{addr: slot, plan: plan, code: code}
	x.noteSlot(slot, addr, plan, false)
	return slot, nil
}

// allocSlot returns a slot holding the code gen makes for its address: one
// an earlier attachment left with that code, or a new one in a page within
// reach of addr (mapping a page through th when all are full).
// Preconditions: on the tracer thread; th is stopped.
func (w *World) allocSlot(th *thread, addr uint64, gen func(slot uint64) ([]byte, error)) (uint64, []byte, error) {
	p := th.proc
	x := &p.xol
	if !x.adopted {
		x.adopted = true
		w.adoptXolPages(p)
	}
	for i, o := range x.old {
		if code, err := gen(o.addr); err == nil && bytes.HasPrefix(o.code, code) {
			x.old = append(x.old[:i:i], x.old[i+1:]...)
			return o.addr, code, nil
		}
	}
	var lastErr error
	for i := 0; i <= len(x.pages); i++ {
		var pg *xolPage
		if i < len(x.pages) {
			pg = &x.pages[i]
			if pg.used >= xolSlots || dist(pg.addr, addr) > reach {
				continue
			}
		} else {
			a, err := w.mapXolPage(th, addr)
			if err != nil {
				return 0, nil, err
			}
			x.pages = append(x.pages, xolPage{addr: a})
			pg = &x.pages[len(x.pages)-1]
		}
		slot := pg.addr + xolHeader + uint64(pg.used*install.MaxSlotSize)
		code, err := gen(slot)
		if err != nil {
			lastErr = err
			if errors.Is(err, install.ErrSlotRange) {
				continue
			}
			return 0, nil, err
		}
		if err := p.as.WriteMemory(slot, code); err != nil {
			return 0, nil, fmt.Errorf("write slot: %w", err)
		}
		pg.used++
		var used [4]byte
		binary.LittleEndian.PutUint32(used[:], uint32(pg.used))
		if err := p.as.WriteMemory(pg.addr+xolUsedOff, used[:]); err != nil {
			return 0, nil, fmt.Errorf("write slot page header: %w", err)
		}
		return slot, code, nil
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("no slot page within reach of %#x", addr)
	}
	return 0, nil, lastErr
}

// adoptXolPages finds the slot pages an earlier attachment left in p (by
// their magic) and records them and their slots, so that they are reused:
// a slot that may still run (a signal frame may point into it) is never
// rewritten, and a new page is mapped only when they are full or out of
// reach. Preconditions: on the tracer thread.
func (w *World) adoptXolPages(p *process) {
	ms, err := p.readMaps()
	if err != nil {
		return
	}
	for _, m := range ms {
		// Adjacent pages of one protection merge into one mapping: look
		// at every page of the anonymous executable ones.
		if m.Ino != 0 || m.Path != "" || m.Perms != "r-xp" {
			continue
		}
		for a := m.Start; a+xolPageSize <= m.End; a += xolPageSize {
			w.adoptXolPage(p, a)
		}
	}
}

// adoptXolPage records the page at a if it is a slot page of ours.
func (w *World) adoptXolPage(p *process, a uint64) {
	x := &p.xol
	for _, pg := range x.pages {
		if pg.addr == a {
			return
		}
	}
	var hdr [xolHeader]byte
	if p.as.ReadMemory(a, hdr[:]) != nil || !bytes.Equal(hdr[8:8+len(xolMagic)], xolMagic) {
		return
	}
	used := int(binary.LittleEndian.Uint32(hdr[xolUsedOff:]))
	if used > xolSlots {
		return // not ours after all
	}
	slots := make([]byte, used*install.MaxSlotSize)
	if p.as.ReadMemory(a+xolHeader, slots) != nil {
		return
	}
	x.pages = append(x.pages, xolPage{addr: a, used: used})
	for i := range used {
		x.old = append(x.old, xolSlot{addr: a + xolHeader + uint64(i*install.MaxSlotSize), code: slots[i*install.MaxSlotSize : (i+1)*install.MaxSlotSize]})
	}
}

func dist(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}

// mapXolPage maps a slot page near addr in th's process by injecting mmap.
func (w *World) mapXolPage(th *thread, addr uint64) (uint64, error) {
	p := th.proc
	ms, err := p.readMaps()
	if err != nil {
		return 0, err
	}
	sys, err := w.syscallInsn(p, ms)
	if err != nil {
		return 0, err
	}
	for _, hint := range gapHints(ms, addr, xolPageSize) {
		r, err := w.injectSyscall(th, sys, unix.SYS_MMAP, hint, xolPageSize,
			unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE,
			^uint64(0), 0)
		if err != nil {
			return 0, err
		}
		if e := int64(r); e < 0 && e >= -4095 {
			if syscall.Errno(-e) == syscall.EEXIST {
				continue
			}
			return 0, fmt.Errorf("injected mmap: %w", syscall.Errno(-e))
		}
		if r != hint {
			// MAP_FIXED_NOREPLACE unknown to the kernel: a hint only.
			if dist(r, addr) <= reach {
				hint = r
			} else {
				w.injectSyscall(th, sys, unix.SYS_MUNMAP, r, xolPageSize, 0, 0, 0, 0)
				continue
			}
		}
		hdr := append([]byte{0x0f, 0x05, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc}, xolMagic...)
		hdr = append(hdr, make([]byte, xolUsedOff+4-len(hdr))...) // used = 0
		if err := p.as.WriteMemory(hint, hdr); err != nil {
			return 0, fmt.Errorf("write slot page header: %w", err)
		}
		return hint, nil
	}
	return 0, fmt.Errorf("no free page within %d MiB of %#x for a slot page", reach>>20, addr)
}

// mmapMinAddr is the lowest address mmap accepts.
func mmapMinAddr() uint64 {
	b, err := os.ReadFile("/proc/sys/vm/mmap_min_addr")
	if err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && v >= 4096 {
			return (v + 4095) &^ 4095
		}
	}
	return 0x10000
}

// gapHints returns candidate addresses for size bytes (a slot page, a jump
// region) near addr, nearest first: the top of each free gap (just below
// the next mapping, so that no gap shrinks from below: a heap grows upwards
// into its gap) within reach of addr.
func gapHints(ms []procfs.Mapping, addr, size uint64) []uint64 {
	lo := mmapMinAddr()
	const top = 0x7fff_ffff_f000
	var hints []uint64
	prevEnd := lo
	for i := 0; i <= len(ms); i++ {
		next := uint64(top)
		if i < len(ms) {
			next = ms[i].Start
		}
		if next >= prevEnd+size && i < len(ms) {
			h := next - size
			if dist(h, addr) <= reach {
				hints = append(hints, h)
			}
		}
		if i < len(ms) && ms[i].End > prevEnd {
			prevEnd = ms[i].End
		}
	}
	sort.Slice(hints, func(i, j int) bool { return dist(hints[i], addr) < dist(hints[j], addr) })
	return hints
}
