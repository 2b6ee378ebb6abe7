package probes

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// Batches: many registrations (or unregistrations) on one inode at once.
// The seed registers one uprobe at a time, each with a walk of the inode's
// mapping that takes every mm's mmap_sem once; a thousand probes on a file
// a hundred processes map are then a hundred thousand walk steps, each one
// install call. RegisterMany and UnregisterMany add and remove the
// consumers as Register and Unregister do, one by one under the inode's
// i_mutex, and then make one walk: each VMA's mmap_sem is taken once for
// all the breakpoints of the batch inside it, and EngineOptions.Batch
// brackets that run of install (remove) calls so that the world can serve
// them together. The invariants are Register's and Unregister's: every
// consumer is added before the walk's temp list is taken (a VMA mapped
// later sees it in MmapHook), every last consumer is removed before it.

// Registration is one registration of a RegisterMany: Register's
// arguments but the inode.
type Registration struct {
	Off  uint64
	Insn []byte
	Arch *install.Plan
	C    *Consumer
}

// Unregistration is one unregistration of an UnregisterMany.
type Unregistration struct {
	Off uint64
	C   *Consumer
}

// ManyError is RegisterMany's error: Err is the error of regs[Index].
type ManyError struct {
	Index int
	Err   error
}

func (e *ManyError) Error() string { return e.Err.Error() }
func (e *ManyError) Unwrap() error { return e.Err }

// batchItem is one breakpoint of a batch walk.
type batchItem struct {
	u     *Uprobe
	vaddr uint64
}

// batchVMA is one VMA of a batch walk with its breakpoints.
type batchVMA struct {
	v     *rmap.VMA
	items []batchItem
}

// snapshotBatch returns the temp list of a batch: every live executable VMA
// that maps one of us, with the breakpoints of us inside it, in the order
// the VMAs were first found. Preconditions as snapshotVMAs.
func (e *Engine) snapshotBatch(us []*Uprobe) []batchVMA {
	var out []batchVMA
	at := map[*rmap.VMA]int{}
	for _, u := range us {
		for _, it := range e.snapshotVMAs(u) {
			i, ok := at[it.v]
			if !ok {
				i = len(out)
				at[it.v] = i
				out = append(out, batchVMA{v: it.v})
			}
			out[i].items = append(out[i].items, batchItem{u: u, vaddr: it.vaddr})
		}
	}
	return out
}

// walkBatch runs fn on every VMA of the batch's temp list that is still
// live, with its mm's mmap_sem held for reading and EngineOptions.Batch
// bracketing the call, until fn returns false. Preconditions: the inode's
// IMutex is held. (walkVMAs for a batch: the same srcu and liveness rules.)
//
// The VMAs are independent (each step takes only its own mm's mmap_sem), so
// with many of them the steps run on a few goroutines at once (one a CPU,
// at most maxBatchWorkers) while the caller keeps i_mutex and the srcu read
// section; fn must then be safe for concurrent use on different VMAs.
func (e *Engine) walkBatch(us []*Uprobe, fn func(bv batchVMA) bool) {
	idx := e.srcu.ReadLock()
	defer e.srcu.ReadUnlock(idx)
	list := e.snapshotBatch(us)
	var stop atomic.Bool
	step := func(bv batchVMA) {
		bv.v.MM.MmapSem.RLock()
		if bv.v.LiveLocked() && !stop.Load() {
			end := e.batchStart(bv)
			if !fn(bv) {
				stop.Store(true)
			}
			end()
		}
		bv.v.MM.MmapSem.RUnlock()
	}
	workers := min(runtime.GOMAXPROCS(0), maxBatchWorkers, len(list)/minBatchPerWorker)
	if workers < 2 {
		for _, bv := range list {
			if step(bv); stop.Load() {
				return
			}
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for !stop.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(list) {
					return
				}
				step(list[i])
			}
		})
	}
	wg.Wait()
}

// The parallel batch walk: at most maxBatchWorkers goroutines, each with
// minBatchPerWorker VMAs at least.
const (
	maxBatchWorkers   = 4
	minBatchPerWorker = 8
)

// batchStart calls EngineOptions.Batch for a run of calls on bv.
func (e *Engine) batchStart(bv batchVMA) func() {
	if e.batch == nil || len(bv.items) < 2 {
		return func() {}
	}
	vaddrs := make([]uint64, len(bv.items))
	for i, it := range bv.items {
		vaddrs[i] = it.vaddr
	}
	return e.batch(bv.v, vaddrs)
}

// RegisterMany registers every r of regs on in, as Register would one after
// the other, with one walk for the breakpoints of all the uprobes that got
// their first consumer. Errors as Register's, for the first r that fails,
// as a *ManyError naming it; after an error no registration of regs is
// left (the ones before it are rolled back).
func (e *Engine) RegisterMany(in *rmap.Inode, regs []Registration) error {
	for i, r := range regs {
		if r.C == nil || len(r.Insn) == 0 {
			return &ManyError{i, fmt.Errorf("register %v+%#x: %w", in.Key, r.Off, syscall.EINVAL)}
		}
	}
	in.IMutex.Lock()
	defer in.IMutex.Unlock()
	type added struct {
		u *Uprobe
		c *Consumer
	}
	var done []added
	var fresh []*Uprobe
	undo := func() {
		for i := len(done) - 1; i >= 0; i-- {
			a := done[i]
			a.u.delConsumerLocked(a.c)
			a.c.on.Store(nil)
			if a.u.NumConsumers() == 0 {
				e.unregisterLocked(a.u) // _unregister_uprobe
			} else {
				e.Changed(a.u)
			}
		}
	}
	index := map[*Uprobe]int{} // the first r of each fresh uprobe
	for i, r := range regs {
		u := e.allocUprobeLocked(in, r.Off, r.Insn, r.Arch)
		if u.hasConsumer(r.C) {
			undo()
			return &ManyError{i, fmt.Errorf("register %v+%#x: consumer %q already registered: %w", in.Key, r.Off, r.C.Name, syscall.EEXIST)}
		}
		first := u.NumConsumers() == 0
		if !first {
			e.Flush(u)
		}
		u.addConsumerLocked(r.C)
		r.C.on.Store(&consumerOn{e, u})
		done = append(done, added{u, r.C})
		if first {
			in.AddUprobesCount(1)
			fresh = append(fresh, u)
			index[u] = i
		} else {
			e.Changed(u)
		}
	}
	var ret error
	var retMu sync.Mutex
	e.walkBatch(fresh, func(bv batchVMA) bool {
		for _, it := range bv.items {
			if err := e.installBreakpointLocked(bv.v, it.vaddr, it.u); err != nil {
				retMu.Lock()
				if ret == nil {
					ret = &ManyError{index[it.u], fmt.Errorf("register %v+%#x: mm %d: %w", in.Key, it.u.Offset, bv.v.MM.ID, err)}
				}
				retMu.Unlock()
				return false
			}
		}
		return true
	})
	if ret != nil {
		undo()
	}
	return ret
}

// UnregisterMany unregisters every r of unregs from in, as Unregister would
// one after the other, with one walk for the breakpoints of all the
// uprobes that lost their last consumer. Errors: ENOENT for an r that is
// not registered (nothing is unregistered then); otherwise every consumer
// is gone and an error reports the first breakpoint that could not be
// restored.
func (e *Engine) UnregisterMany(in *rmap.Inode, unregs []Unregistration) error {
	in.IMutex.Lock()
	defer in.IMutex.Unlock()
	us := make([]*Uprobe, len(unregs))
	for i, r := range unregs {
		u := e.findUprobe(in, r.Off)
		if u == nil || !u.hasConsumer(r.C) {
			return fmt.Errorf("unregister %v+%#x: %w", in.Key, r.Off, syscall.ENOENT)
		}
		us[i] = u
	}
	var last []*Uprobe
	for i, r := range unregs {
		u := us[i]
		e.Flush(u) // r.C's hits up to now are r.C's
		if !u.delConsumerLocked(r.C) {
			continue // named twice
		}
		r.C.on.Store(nil)
		if u.NumConsumers() != 0 {
			e.Changed(u)
		} else {
			last = append(last, u)
		}
	}
	var ret error
	var retMu sync.Mutex
	e.walkBatch(last, func(bv batchVMA) bool {
		for _, it := range bv.items {
			// Unconditional, verify-opcode: restores only where 0xCC is.
			err := e.remove(bv.v.MM, it.vaddr, it.u)
			if err != nil && !errors.Is(err, syscall.ESRCH) {
				retMu.Lock()
				if ret == nil {
					ret = fmt.Errorf("unregister %v+%#x: mm %d: %w", in.Key, it.u.Offset, bv.v.MM.ID, err)
				}
				retMu.Unlock()
			}
			bv.v.RemoveBreakpointLocked(it.u.Offset)
		}
		return true
	})
	for _, u := range last {
		in.AddUprobesCount(-1)
		e.test.onBeforeDelete(u)
		e.deleteUprobe(u)
	}
	return ret
}
