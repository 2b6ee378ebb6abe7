package sim

import (
	"debug/elf"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// Base is where a Watcher maps a file: the file's link-time addresses are
// offset by Base, as the loader places a PIE.
const Base = 0x555555554000

// Watcher is a World used as the world of core/manager (its World
// interface): Watch(in, path) reads the ELF file at path and maps every
// executable PT_LOAD segment of it into a new process, as if one process
// ran it; Unwatch and Close make those processes exit. It records every
// call for tests to check, and can be told to fail. Its methods are safe
// for concurrent use.
type Watcher struct {
	W *World // immutable

	// mu guards everything below. It is a leaf lock, held only to read or
	// change these fields.
	mu sync.Mutex
	// NoProcess makes Watch map nothing (no process maps the file).
	NoProcess bool
	// FailWatch, if not nil, is what Watch returns (it does nothing else).
	FailWatch error
	// OnWatch, if not nil, is called at the start of every Watch, before
	// mu is taken (a test holds one file's Watch there). Set it before
	// the first Watch.
	OnWatch func(in *rmap.Inode)
	// FailWrites makes the processes of the next Watch refuse memory
	// writes (EIO), as a process whose memory cannot be written.
	FailWrites bool
	// Skips is what Skipped returns.
	Skips []struct {
		Pid    int
		Reason string
	}

	procs  map[rmap.InodeKey]*Proc
	calls  []string
	closed bool
}

// NewWatcher returns a Watcher over a new World of eng and inodes.
func NewWatcher(eng *probes.Engine, inodes *rmap.Inodes) *Watcher {
	return &Watcher{W: NewWorld(eng, inodes), procs: map[rmap.InodeKey]*Proc{}}
}

// Set runs f with w's fields locked (to change NoProcess, FailWatch...).
func (w *Watcher) Set(f func(w *Watcher)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(w)
}

// Watch maps the executable segments of the file at path (in's file) into
// a new process (replacing one an earlier Watch of in made).
func (w *Watcher) Watch(in *rmap.Inode, path string) error {
	if w.OnWatch != nil {
		w.OnWatch(in)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.FailWatch != nil {
		return w.FailWatch
	}
	w.calls = append(w.calls, "watch "+in.Key.String())
	if w.NoProcess {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	ef, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer ef.Close()
	f := w.W.NewFile(in.Key, data)
	p := w.W.Spawn()
	p.as.failWrites = w.FailWrites
	for _, ph := range ef.Progs {
		if ph.Type != elf.PT_LOAD || ph.Flags&elf.PF_X == 0 {
			continue
		}
		start := Base + ph.Vaddr&^(PageSize-1)
		pgoff := ph.Off &^ (PageSize - 1)
		length := ph.Filesz + ph.Off - pgoff
		if _, err := p.Mmap(f, start, pgoff, length, true); err != nil {
			p.Exit()
			return err
		}
	}
	w.procs[in.Key] = p
	return nil
}

// Unwatch detaches the process of in's Watch (Proc.Detach): the engine
// forgets it; its memory stays readable through Proc.
func (w *Watcher) Unwatch(in *rmap.Inode) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, "unwatch "+in.Key.String())
	if p := w.procs[in.Key]; p != nil {
		p.Detach()
	}
}

// Close records that the world was closed; the processes stay (a real
// world leaves them running, detached), so tests can check their memory.
func (w *Watcher) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return nil
}

// Skipped returns Skips.
func (w *Watcher) Skipped(in *rmap.Inode) []struct {
	Pid    int
	Reason string
} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.Skips
}

// WatcherStats is core/manager's WorldStats (the same unnamed struct type).
type WatcherStats = struct {
	Processes, Threads, Breakpoints, Hits, Errors  int
	Execs, ExecFans, ExecLoaderTraps, ExecSwitches int
	ExecFan, ExecAttach, ExecLoader, ExecSwitch    time.Duration
}

// Stats returns the number of processes in the world (no execs: the
// simulated world has no exec holds).
func (w *Watcher) Stats() WatcherStats {
	n := len(w.W.Procs())
	return WatcherStats{Processes: n, Threads: n}
}

// Calls returns the Watch and Unwatch calls so far ("watch DEV:INO",
// "unwatch DEV:INO"), in order.
func (w *Watcher) Calls() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.calls...)
}

// Closed reports whether Close was called.
func (w *Watcher) Closed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// Proc returns the process of key's latest Watch (detached after Unwatch),
// or nil.
func (w *Watcher) Proc(key rmap.InodeKey) *Proc {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.procs[key]
}

// Hit simulates a thread of the process of key's Watch executing the
// instruction at file offset off: if the engine has its breakpoint there
// (and 0xCC is in memory), the engine dispatches a hit. It reports whether
// it was a hit.
func (w *Watcher) Hit(key rmap.InodeKey, off uint64) bool {
	p := w.Proc(key)
	if p == nil {
		return false
	}
	return p.Hit(off)
}

// Hit is Watcher.Hit for the process p, which maps its file at Base: the
// hit path of a world, under mmap_sem held for reading.
func (p *Proc) Hit(off uint64) bool {
	vaddr := Base + off
	mm := p.MM
	mm.MmapSem.RLock()
	defer mm.MmapSem.RUnlock()
	if p.exited {
		return false
	}
	u := p.W.Eng.LookupLocked(mm, vaddr)
	if u == nil {
		return false
	}
	var b [1]byte
	if err := p.as.ReadMemory(vaddr, b[:]); err != nil || b[0] != 0xcc {
		panic(fmt.Sprintf("sim: engine has a breakpoint at %#x of mm %d, memory has %#02x (%v)", vaddr, mm.ID, b[0], err))
	}
	p.W.Eng.Dispatch(u, probes.Hit{Pid: mm.ID, Tid: mm.ID, Vaddr: vaddr, Time: time.Now().UnixNano()})
	return true
}

// ByteAt returns the byte of p's memory at file offset off of the file it
// maps at Base (0 and an error if unmapped).
func (p *Proc) ByteAt(off uint64) (byte, error) {
	var b [1]byte
	err := p.ReadMemory(Base+off, b[:])
	return b[0], err
}

var errWriteRefused = fmt.Errorf("sim: memory write refused: %w", syscall.EIO)
