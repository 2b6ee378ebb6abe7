// Package ledger is the table of every breakpoint uprobefs has written into
// a process, kept in shared memory (a memfd) so that it outlives the
// daemon: the guardian process (cmd/uprobefs guardian) maps the same
// memory and, when the daemon dies without cleaning up (SIGKILL, OOM),
// puts the original bytes back.
//
// The daemon adds an entry before it writes a breakpoint and removes it
// after it restored the byte, so at any moment every int3 of ours in a
// process has a live entry (an entry whose byte is not, or no longer, an
// int3 is skipped by the guardian). An entry is written field by field and
// published by its state word last; the guardian reads only after the
// daemon is dead, so it never sees one half written.
//
// It imports only the standard library and x/sys/unix: core/proc and the
// command use it.
package ledger

import (
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Entry is one breakpoint: the process, the address, what it belongs to
// (the mapped file's device, inode and offset, checked again before a
// restore) and the original byte.
type Entry struct {
	Owner int // the process the daemon tracks it under (its MM's first pid)
	Pid   int // a live process showing that address space
	Vaddr uint64
	Dev   uint64
	Ino   uint64
	Off   uint64
	Orig  byte
	// Tail, for a jump site (core/proc), are the original bytes after
	// Orig that the jump overwrites (at most MaxTail): while byte 0 is
	// an int3, the guardian puts them back before Orig.
	Tail []byte
}

// MaxTail is how many bytes after Orig an entry keeps.
const MaxTail = slotSize - sTail

// The memory layout: a header, then fixed-size slots.
const (
	headerSize = 64
	slotSize   = 64
	magic      = "uprobefs-ledger1"
	// header fields
	hSlots = 16 // uint32: number of slots
	hClean = 20 // uint32: 1 once the daemon shut down cleanly
	hHigh  = 24 // uint32: slots ever used (the guardian reads no further)
	// slot fields
	sState = 0 // uint32: 0 free, 1 live (written last)
	sOwner = 4 // int32
	sPid   = 8 // int32
	sVaddr = 16
	sDev   = 24
	sIno   = 32
	sOff   = 40
	sOrig  = 48
	sTailN = 49 // uint8: len(Tail)
	sTail  = 50
)

// DefaultSlots is the table's first capacity: 64 Ki breakpoints (4 MiB of
// memfd, of which only the pages used are ever touched). It doubles when
// full, up to MaxSlots.
const DefaultSlots = 1 << 16

// MaxSlots bounds the table: 16 Mi breakpoints (1 GiB of memfd at most).
const MaxSlots = 1 << 24

// ErrFull is returned by Add when every slot is live and the table cannot
// grow.
var ErrFull = fmt.Errorf("breakpoint ledger full: %w", syscall.ENOSPC)

// Ledger is a breakpoint table in shared memory. Its methods are safe for
// concurrent use.
type Ledger struct {
	f   *os.File
	mem []byte

	mu sync.Mutex
	// byOwn is the live entries' slots by owner and address (daemon
	// side): one small map per process rather than one map of every
	// entry (a hundred thousand breakpoints made each access a cache
	// miss); an owner's map is kept when it empties, for the next
	// registration, until DropOwner. n counts the live entries.
	byOwn map[int]map[uint64]int
	n     int
	free  []int
	next  int
}

// Create makes a new ledger of n slots in a memfd.
func Create(n int) (*Ledger, error) {
	fd, err := unix.MemfdCreate("uprobefs-ledger", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "uprobefs-ledger")
	size := headerSize + n*slotSize
	if err := f.Truncate(int64(size)); err != nil {
		f.Close()
		return nil, fmt.Errorf("ledger: %w", err)
	}
	l, err := mapFile(f, size)
	if err != nil {
		return nil, err
	}
	copy(l.mem, magic)
	binary.LittleEndian.PutUint32(l.mem[hSlots:], uint32(n))
	return l, nil
}

// Open maps the ledger in f (the guardian's inherited descriptor).
func Open(f *os.File) (*Ledger, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() < headerSize {
		return nil, fmt.Errorf("ledger: %d bytes: too small", st.Size())
	}
	l, err := mapFile(f, int(st.Size()))
	if err != nil {
		return nil, err
	}
	n := int(binary.LittleEndian.Uint32(l.mem[hSlots:]))
	if string(l.mem[:len(magic)]) != magic || headerSize+n*slotSize > len(l.mem) {
		l.Close()
		return nil, fmt.Errorf("ledger: not a ledger")
	}
	return l, nil
}

func mapFile(f *os.File, size int) (*Ledger, error) {
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ledger: mmap: %w", err)
	}
	return &Ledger{f: f, mem: mem, byOwn: map[int]map[uint64]int{}}, nil
}

// File is the memfd, to hand to the guardian (exec.Cmd.ExtraFiles).
func (l *Ledger) File() *os.File { return l.f }

// Close unmaps the ledger and closes its descriptor.
func (l *Ledger) Close() {
	unix.Munmap(l.mem)
	l.f.Close()
}

func (l *Ledger) slots() int { return int(binary.LittleEndian.Uint32(l.mem[hSlots:])) }

func (l *Ledger) slot(i int) []byte {
	return l.mem[headerSize+i*slotSize : headerSize+(i+1)*slotSize]
}

func state(s []byte) *uint32 { return (*uint32)(unsafe.Pointer(&s[sState])) }

// Add records e (before its breakpoint is written). Adding an entry that
// is live already (same owner and address) updates it.
func (l *Ledger) Add(e Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	own := l.byOwn[e.Owner]
	if own == nil {
		own = map[uint64]int{}
		l.byOwn[e.Owner] = own
	}
	i, ok := own[e.Vaddr]
	if !ok {
		switch {
		case len(l.free) > 0:
			i, l.free = l.free[len(l.free)-1], l.free[:len(l.free)-1]
		case l.next < l.slots() || l.grow() == nil:
			i = l.next
			l.next++
			atomic.StoreUint32((*uint32)(unsafe.Pointer(&l.mem[hHigh])), uint32(l.next))
		default:
			return fmt.Errorf("%w (%d breakpoints)", ErrFull, l.slots())
		}
	}
	s := l.slot(i)
	atomic.StoreUint32(state(s), 0)
	binary.LittleEndian.PutUint32(s[sOwner:], uint32(e.Owner))
	binary.LittleEndian.PutUint32(s[sPid:], uint32(e.Pid))
	binary.LittleEndian.PutUint64(s[sVaddr:], e.Vaddr)
	binary.LittleEndian.PutUint64(s[sDev:], e.Dev)
	binary.LittleEndian.PutUint64(s[sIno:], e.Ino)
	binary.LittleEndian.PutUint64(s[sOff:], e.Off)
	s[sOrig] = e.Orig
	s[sTailN] = byte(copy(s[sTail:], e.Tail))
	atomic.StoreUint32(state(s), 1)
	if !ok {
		own[e.Vaddr] = i
		l.n++
	}
	return nil
}

// Reserve makes room for n more entries of owner in the daemon's index
// (the entries of a run of breakpoint writes), so that adding them does
// not rehash it again and again.
func (l *Ledger) Reserve(owner, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byOwn[owner] = reserve(l.byOwn[owner], n)
}

// reserve returns m, or a copy of it with room for n more entries where
// adding them would grow it more than once.
func reserve(m map[uint64]int, n int) map[uint64]int {
	if n < 2*len(m)+8 {
		if m == nil {
			m = map[uint64]int{}
		}
		return m
	}
	c := make(map[uint64]int, len(m)+n)
	maps.Copy(c, m)
	return c
}

// grow doubles the table (daemon side, l.mu held): the memfd is made
// larger and mapped again. The guardian maps it only once the daemon is
// dead, at its final size.
func (l *Ledger) grow() error {
	n := l.slots()
	if n >= MaxSlots {
		return ErrFull
	}
	size := headerSize + 2*n*slotSize
	if err := l.f.Truncate(int64(size)); err != nil {
		return err
	}
	mem, err := unix.Mmap(int(l.f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	unix.Munmap(l.mem)
	l.mem = mem
	binary.LittleEndian.PutUint32(l.mem[hSlots:], uint32(2*n))
	return nil
}

// SetTail records the Tail of the live entry of owner at vaddr, before the
// daemon writes a jump over those bytes (its count last, after the bytes).
// It reports false if there is no such entry or tail is longer than
// MaxTail.
func (l *Ledger) SetTail(owner int, vaddr uint64, tail []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, ok := l.byOwn[owner][vaddr]
	if !ok || len(tail) > MaxTail {
		return false
	}
	s := l.slot(i)
	copy(s[sTail:], tail)
	s[sTailN] = byte(len(tail)) // the guardian reads only after the daemon died
	return true
}

// Remove forgets the entry of owner at vaddr (after its byte was restored).
func (l *Ledger) Remove(owner int, vaddr uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removeLocked(owner, vaddr)
}

func (l *Ledger) removeLocked(owner int, vaddr uint64) {
	own := l.byOwn[owner]
	i, ok := own[vaddr]
	if !ok {
		return
	}
	atomic.StoreUint32(state(l.slot(i)), 0)
	delete(own, vaddr)
	l.n--
	l.free = append(l.free, i)
}

// DropOwner forgets every entry of owner (its address space is gone: exit,
// exec).
func (l *Ledger) DropOwner(owner int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for va := range l.byOwn[owner] {
		l.removeLocked(owner, va)
	}
	delete(l.byOwn, owner)
}

// Len is the number of live entries.
func (l *Ledger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// SetClean records that the daemon shut down cleanly (every byte restored
// by itself): the guardian then has nothing to do.
func (l *Ledger) SetClean() {
	l.mu.Lock()
	defer l.mu.Unlock()
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&l.mem[hClean])), 1)
}

// Clean reports whether SetClean was called.
func (l *Ledger) Clean() bool {
	return atomic.LoadUint32((*uint32)(unsafe.Pointer(&l.mem[hClean]))) == 1
}

// Live returns every live entry, read from the shared memory (the
// guardian's view).
func (l *Ledger) Live() []Entry {
	var out []Entry
	high := min(int(atomic.LoadUint32((*uint32)(unsafe.Pointer(&l.mem[hHigh])))), l.slots())
	for i := range high {
		s := l.slot(i)
		if atomic.LoadUint32(state(s)) != 1 {
			continue
		}
		out = append(out, Entry{
			Owner: int(int32(binary.LittleEndian.Uint32(s[sOwner:]))),
			Pid:   int(int32(binary.LittleEndian.Uint32(s[sPid:]))),
			Vaddr: binary.LittleEndian.Uint64(s[sVaddr:]),
			Dev:   binary.LittleEndian.Uint64(s[sDev:]),
			Ino:   binary.LittleEndian.Uint64(s[sIno:]),
			Off:   binary.LittleEndian.Uint64(s[sOff:]),
			Orig:  s[sOrig],
			Tail:  append([]byte(nil), s[sTail:sTail+min(int(s[sTailN]), MaxTail)]...),
		})
	}
	return out
}
