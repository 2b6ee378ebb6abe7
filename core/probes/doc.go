// Package probes is the uprobes engine: the algorithm of the seed
// (shared/seed/uprobes-locking-seed.txt) and nothing else — the uprobe tree
// (tree.go), uprobe objects and their consumers (uprobe.go: add_consumer,
// del_consumer), Register/Unregister (engine.go: register_uprobe,
// unregister_uprobe), MmapHook/MunmapHook (mmap.go: mmap_uprobe,
// munmap_uprobe), the hit path (hit.go: LookupLocked, the kernel's
// find_active_uprobe, and Dispatch), the walk the status view uses
// (sites.go: Sites), and the batched Register/Unregister of many probes on
// one inode (batch.go: RegisterMany, UnregisterMany — the seed's walk made
// once for all of them, each VMA's mmap_sem taken once, the VMAs on a few
// goroutines while the caller holds i_mutex and the srcu read section).
//
// It imports only core/rmap, core/srcu, core/lockdep, core/install (the
// arch part: struct arch_uprobe is an install.Plan) and google/btree: no
// os, no /proc, no log, no golang.org/x/sys/unix (make lint checks it; os
// is reached only through the standard library's fmt). The world under it
// (core/proc, core/sim) writes memory through the Install and Remove hooks
// and calls MmapHook/MunmapHook; the facade (core/manager) calls Register
// and Unregister.
//
// # Lock order
//
// This is the one place the hierarchy is written down; core/lockdep checks
// it in tests (its classes are these, in this order).
//
//	(waiting for core/proc's tracer thread)  nothing may be held while waiting for it
//	rmap.Inode.IMutex                 i_mutex: register/unregister on one inode
//	  Engine.srcu                     uprobes_srcu: a walk's read section
//	    rmap.MM.MmapSem               mmap_sem: the VMA list; write a breakpoint (read)
//	      rmap.Inode's i_mmap_mutex   the inode's mapping (LockMapping)
//	        Engine.mmapMu             uprobes_mmap_mutex: mmap_uprobe lists vs delete_uprobe
//	          Engine.treeMu           treelock: the uprobe tree
//	            (waiting for a PTRACE_POKEDATA write) allowed under every lock
//
//	tracer -> i_mutex -> srcu -> mmap_sem -> i_mmap_mutex -> uprobes_mmap_mutex -> treelock -> tracer poke
//
// srcu (uprobes_srcu): a register/unregister walk holds a read section from
// before it takes its temp list of VMAs until after its last VMA, and takes
// mmap_sem (read) inside it; so nothing may wait for an srcu grace period
// while holding an mmap_sem, and nothing does: MunmapHook defers the grace
// period to a reclaimer goroutine that holds no lock (lockdep checks
// Synchronize as a wait of class srcu). The tracer: core/proc's tracer
// thread takes mmap_sem (write) and, through MmapHook, the locks below, so
// no goroutine may wait for it holding any of them; a breakpoint write with
// PTRACE_POKEDATA, which a walk makes holding mmap_sem, is served by the
// tracer holding no lock (tracer poke, a leaf).
//
// Leaf locks outside the hierarchy, never held while taking another:
// Engine.retireMu, rmap.Inodes' registry lock, rmap.MM's breakpoint-table
// lock, and any lock inside a world's AddressSpace. Install/Remove callbacks run
// under mmap_sem and take no lock of the hierarchy; they may block (a
// syscall, a ptrace request) — no lock a hit path or a walk needs besides
// that mmap_sem is held across them.
//
// # Where the seed is a sketch, and how it is resolved
//
//   - Deadlock srcu vs mmap_sem (munmap_uprobe's synchronize_srcu under
//     mmap_sem write while register holds srcu and waits for mmap_sem
//     read): see Engine.walkVMAs and Engine.MunmapHook. MunmapHook marks
//     nothing but relies on rmap.RemoveVMALocked having marked the VMA
//     dead under mmap_sem write; walkers check liveness after taking
//     mmap_sem and skip dead VMAs; the VMA object is reusable only after a
//     grace period waited for without locks.
//   - list_del while another walker iterates: the register/unregister
//     temp list is a slice private to the walk (snapshotVMAs); no one else
//     touches it. The mmap_uprobe pending list is intrusive in the uprobe
//     (one list at a time), protected by uprobes_mmap_mutex, which both
//     MmapHook and delete_uprobe hold.
//   - ret handling: ESRCH and EEXIST are not failures (EEXIST counts as a
//     breakpoint present); any other install error stops the walk and
//     Register rolls back through _unregister_uprobe.
//   - alloc_uprobe before i_mutex: done under i_mutex (allocUprobeLocked).
//   - srcu_read_lock after building the temp list: taken before.
//   - fork copies breakpoints: MmapHook removes (verify-opcode) the
//     breakpoint of a uprobe that is in the tree without consumers, i.e.
//     being unregistered by a walk that may predate the VMA. A world's fork
//     must hold the parent's mmap_sem for writing from the memory copy
//     until the child's MmapHooks are done (as Linux's dup_mmap does).
//   - "Cannot allocate when i_mmap_mutex is held" becomes: hold no lock of
//     the hierarchy across a syscall or ptrace request except mmap_sem
//     around the single breakpoint write. Go allocation under
//     i_mmap_mutex is fine (it does not sleep on reclaim).
//   - Reference counts: the seed's get/put_uprobe and __iget/iput only
//     keep memory alive; the Go garbage collector does that. What they
//     also guarded — a uprobe found by one path but deleted by another — is
//     covered by i_mutex (register/unregister) and uprobes_mmap_mutex
//     (mmap_uprobe).
//
// # The breakpoint table
//
// The per-VMA breakpoint sets of core/rmap are the one table of which
// breakpoints are in place: an offset enters a VMA's set before the int3 is
// written (a thread may trap at once, and the hit path must find it) and
// leaves it after the original byte is restored. The hit path
// (LookupLocked), the status view (Sites) and a world's detach
// (RestoreVMALocked) and give-up (RemoveLocked) all read or change it
// through the engine, so they cannot disagree.
//
// # Counts
//
// rmap.Inode.UprobesCount is the number of uprobes with consumers on the
// inode. rmap.MM.UprobesCount is the number of breakpoints this engine has
// in the MM: one per (live executable VMA, registered offset it covers),
// kept per VMA (rmap.VMA.AddBreakpointLocked), so that a breakpoint written
// by a walk and found again by MmapHook (EEXIST) counts once.
//
// # Invariants (shared/DESIGN.md §3, proven by the stress test)
//
//  1. After Register returns nil, every live executable VMA mapping the
//     inode over the offset has the breakpoint.
//  2. After the last consumer's Unregister returns, no VMA has it.
//  3. No write lands on a range that no longer maps that inode there.
//  4. The lock hierarchy above holds; no deadlock.
//  5. MmapHook never installs a uprobe without consumers; a uprobe leaves
//     the tree only with its last consumer.
package probes
