package probes

import (
	"io"
	"slices"
	"sync/atomic"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// Hit is one breakpoint hit.
type Hit struct {
	Pid, Tid int
	Vaddr    uint64
	Time     int64 // unix ns
	// Regs and Mem are set only when a consumer of the uprobe wants them
	// (Consumer.WantRegs): the thread's registers at the probed
	// instruction (Rip is its address) and its memory as the thread sees
	// it (a read that faults returns what it read and an error). Valid
	// during the handler's call only.
	Regs *install.Regs
	Mem  io.ReaderAt
}

// Return is one return of a function whose entry a uprobe with return
// consumers is at: Hit is the thread at the return (Vaddr is the
// function's entry; Regs and Mem as for a Hit, at the return), Ret the
// address it returns to (in its caller), Entry the time of the entry (unix
// ns).
type Return struct {
	Hit
	Ret   uint64
	Entry int64
}

// Consumer is one user of a uprobe (the seed's consumer): a handler and its
// own hit counter. A Consumer is registered on at most one uprobe at a time.
type Consumer struct {
	// Name is free-form (the probe's name in the filesystem). Immutable.
	Name string
	// Handler is optional; it is called on every hit, from the hit path,
	// and must be fast and must not call into the Engine. Immutable.
	Handler func(u *Uprobe, h Hit)
	// Filter is optional (the kernel's uprobe_consumer.filter, asked on
	// the hit path): a hit in a process it rejects is not the consumer's
	// (not counted, no Handler call). It must be fast and must not call
	// into the Engine. Immutable.
	Filter func(pid int) bool
	// WantRegs asks the hit path for Hit.Regs and Hit.Mem (fetch
	// arguments): an extra system call per hit. Immutable.
	WantRegs bool
	// RetHandler makes the consumer a return consumer (the kernel's
	// uprobe_consumer.ret_handler: a uretprobe): its hits are the returns
	// of the function the uprobe is at the entry of, counted and passed to
	// RetHandler at each return, never at the entry. Immutable.
	RetHandler func(u *Uprobe, r Return)
	// Busy is optional: it reports whether the consumer wants its Handler
	// called at every hit right now (a reader streams its events); while
	// it does, the uprobe is not CountOnly (counts.go). Without Busy a
	// Handler is wanted at every hit. When its answer changes, tell the
	// engine (Engine.Changed). Immutable.
	Busy func() bool
	// Lost is optional: it is told of n events of the uprobe lost before
	// they reached the Handler of a Busy consumer (Engine.DispatchLost).
	// Immutable.
	Lost func(n uint64)

	// hits is accessed atomically.
	hits atomic.Uint64
	// on is the uprobe c is registered on and its engine, while it is
	// (for Hits to flush the counts kept outside the engine).
	on atomic.Pointer[consumerOn]
}

// accepts reports whether a hit in process pid is c's (Filter).
func (c *Consumer) accepts(pid int) bool { return c.Filter == nil || c.Filter(pid) }

// busy reports whether c has a Busy that says yes now.
func (c *Consumer) busy() bool { return c.Busy != nil && c.Busy() }

type consumerOn struct {
	e *Engine
	u *Uprobe
}

// Hits returns the number of hits counted for c, those counted outside the
// engine included (Engine.Flush).
func (c *Consumer) Hits() uint64 {
	if on := c.on.Load(); on != nil {
		on.e.Flush(on.u)
	}
	return c.hits.Load()
}

// Uprobe is a probe on (inode, file offset): one breakpoint in every
// executable mapping of the inode covering the offset, shared by its
// consumers. Uprobes are created by Register and leave the tree with their
// last consumer; a *Uprobe is never reused.
type Uprobe struct {
	// Inode is immutable.
	Inode *rmap.Inode
	// Offset is the file offset. Immutable.
	Offset uint64
	// Insn holds the original instruction bytes from the FILE at Offset;
	// Insn[0] is the byte 0xCC replaces. Immutable.
	Insn []byte
	// Arch is how a hit steps over the probed instruction (the kernel's
	// struct arch_uprobe): decoded from the file by core/objfile. nil in
	// worlds that never execute (core/sim). Immutable.
	Arch *install.Plan

	// consumers is the consumer list, copied on write. It is modified
	// under Inode.IMutex and read atomically (Dispatch, MmapHook).
	// Invariant: a uprobe in the tree with no consumers is being
	// registered or unregistered by the holder of Inode.IMutex.
	consumers atomic.Pointer[[]*Consumer]

	// pendingNext links u into the temp list of one mmap_uprobe (the
	// seed's pending_list; a uprobe can be on only one list at a time,
	// which is why MmapHooks are serialized). pendingNext is protected by
	// uprobes_mmap_mutex. deleteUprobe sets it to &poisoned, modelling the
	// kernel's list poisoning/kfree of a deleted uprobe.
	pendingNext *Uprobe

	// deleted reports that u left the tree. deleted is protected by
	// treelock.
	deleted bool
}

// poisoned is the LIST_POISON of pendingNext: the link of a deleted uprobe.
var poisoned Uprobe

// Consumers returns a snapshot of u's consumers.
func (u *Uprobe) Consumers() []*Consumer {
	if p := u.consumers.Load(); p != nil {
		return slices.Clone(*p)
	}
	return nil
}

// list is u's consumer list as published (nil for none): read-only, the
// hit path's view (add and del publish a new list).
func (u *Uprobe) list() []*Consumer {
	if p := u.consumers.Load(); p != nil {
		return *p
	}
	return nil
}

// WantsRegs reports whether a consumer of u wants Hit.Regs and Hit.Mem.
// Safe on the hit path.
func (u *Uprobe) WantsRegs() bool {
	for _, c := range u.list() {
		if c.WantRegs {
			return true
		}
	}
	return false
}

// WantsReturn reports whether u has a return consumer. Safe on the hit
// path.
func (u *Uprobe) WantsReturn() bool {
	for _, c := range u.list() {
		if c.RetHandler != nil {
			return true
		}
	}
	return false
}

// NumConsumers returns the number of consumers of u.
func (u *Uprobe) NumConsumers() int {
	if p := u.consumers.Load(); p != nil {
		return len(*p)
	}
	return 0
}

// hasConsumer reports whether c is a consumer of u.
func (u *Uprobe) hasConsumer(c *Consumer) bool {
	if p := u.consumers.Load(); p != nil {
		return slices.Contains(*p, c)
	}
	return false
}

// addConsumerLocked adds c (the seed's add_consumer).
// Preconditions: u.Inode.IMutex is held.
func (u *Uprobe) addConsumerLocked(c *Consumer) {
	var cs []*Consumer
	if p := u.consumers.Load(); p != nil {
		cs = slices.Clone(*p)
	}
	cs = append(cs, c)
	u.consumers.Store(&cs)
}

// delConsumerLocked removes c and reports whether it was a consumer (the
// seed's del_consumer).
// Preconditions: u.Inode.IMutex is held.
func (u *Uprobe) delConsumerLocked(c *Consumer) bool {
	p := u.consumers.Load()
	if p == nil {
		return false
	}
	i := slices.Index(*p, c)
	if i < 0 {
		return false
	}
	cs := slices.Delete(slices.Clone(*p), i, i+1)
	u.consumers.Store(&cs)
	return true
}
