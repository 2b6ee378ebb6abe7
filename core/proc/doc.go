// Package proc is the real world under the uprobes engine: Linux x86-64
// processes traced with ptrace (shared/DESIGN.md §4).
//
// A World watches inodes. Watch finds every process whose /proc/PID/maps
// maps a watched inode, seizes all its threads (PTRACE_SEIZE, no SIGSTOP,
// with clone/fork/vfork/exec/exit events, never EXITKILL) and gives the
// engine an rmap.MM whose AddressSpace reads and writes /proc/PID/mem, with
// one rmap.VMA per mapping of a watched inode (InsertVMALocked + MmapHook
// under mmap_sem). The engine then writes breakpoints into the processes'
// private copy-on-write text; the file on disk never changes.
//
// The /proc scan (internal/procfs) runs off the tracer thread on a few
// goroutines; attach reads the maps again after the seize (the process may
// have exec'd since the scan).
//
// # Files
//
// One concern a file, by what happens to a process:
//
//	world.go        World, Options, the public API (Watch, Unwatch, Stats, Close)
//	process.go      the process and thread records, their creation and end
//	attach.go       seizing a process and its threads; seizing at an exec
//	dispatch.go     the tracer's event switch: one wait status of a thread; resume
//	lifecycle.go    clone, fork, vfork, exec, orphans, the expect window
//	mappings.go     the MM against /proc/PID/maps: insert, remove, resync
//	rdebug.go       the loader's r_brk, which announces dlopen and dlclose
//	internalbp.go   the tracer's own breakpoints (r_brk, sigaction hooks): write, restore, per-inode cache
//	breakpoints.go  the engine's install/remove hooks: every breakpoint write
//	hits.go         a trap: count, step over (emulation or slot), restart
//	xol.go          out-of-line slot pages
//	jump.go         jump sites: the design, the site records, counts
//	jumpregion.go   jump regions (memfds shared with the daemon) and their trampolines
//	jumpev.go       events from jump sites: the shared ring and its drain
//	jumppatch.go    switching a breakpoint to a jump site and back, with every thread stopped
//	jumpsig.go      signals and faults in trampolines: native contexts
//	jumpview.go     the engine's Flush/Changed hooks; how status shows a site
//	jumpadopt.go    jump regions left by an earlier attachment, adopted and reused
//	slotsig.go      signals and faults in slots: native contexts; fault code; popf
//	shstk.go        CET shadow stacks: call and ret in branch slots
//	uretprobe.go    return probes: the trampoline and the threads' return stacks
//	usermem.go      a process's memory as it sees it (emulation, fetch arguments)
//	sigaction.go, sigtrap.go, syscalls.go   SIGTRAP's disposition and mask kept; followed syscalls
//	skips.go        the processes that map a watched inode but are not traced, and why
//	inject.go       system calls injected into a stopped thread (mmap of a slot page)
//	detach.go       restoring and detaching a process
//	discovery.go    new processes: fanotify holds, the /proc rescan fallback
//	filter.go       process filters: which processes a watched inode's breakpoints go into
//	mem.go, poke.go /proc/PID/mem, and the PTRACE_POKEDATA fallback
//	tracer.go, doorbell.go, ptrace_linux.go   the tracer thread and its requests
//	placement.go, profile.go                  where the tracer runs; hit timing
//
// It imports core/probes, core/rmap, core/install, core/objfile,
// core/fanotify, core/lockdep, internal/procfs and golang.org/x/sys/unix;
// never core/manager (it implements the manager's World interface by
// shape: its Skip and Stats are aliases of the same unnamed struct types).
//
// # The tracer thread
//
// Every ptrace request comes from one goroutine locked to its OS thread
// (tracer.go), which also owns every process and thread record. Other
// goroutines hand it closures (tracer.do). It waits for tracees only:
// waitid(P_ALL, WNOWAIT|__WALL|__WNOTHREAD) peeks at the next event of a
// tracee or child *of the tracer thread* (never at the children that
// os/exec starts from other threads), and wait4(pid) reaps exactly that
// event. The wait blocks in the kernel, so a trap wakes the tracer directly
// (no signal delivery through the Go runtime on the hit path); a request
// wakes it through a doorbell child (doorbell.go). A child of this process
// is never traced (ErrOwnChild): its exit status belongs to os/exec; tests
// start fixtures through a relay program so that they are grandchildren.
// A request not served within a second kicks the doorbell again (a lost
// wake-up would otherwise leave the tracer asleep for ever).
//
// # Hits
//
// A SIGTRAP with si_code SI_KERNEL whose rip-1 is in the engine's
// breakpoint table (Engine.LookupLocked under the MM's mmap_sem for reading:
// the one table of which breakpoints are in place, see breakpoints.go) is
// a hit: Dispatch, then step over without removing the breakpoint:
// emulate (install.Plan.Emulate; for nop/endbr64 just rip via POKEUSER), or
// set rip to the instruction's slot in an XOL page mapped into the process
// by an injected mmap (xol.go). One trap per hit, no single-step. A trap on
// an address whose breakpoint was just removed restarts the instruction; any
// other SIGTRAP is delivered to the program. Other signals pass through;
// group-stops (SIGSTOP, SIGTSTP...) are kept with PTRACE_LISTEN until
// SIGCONT.
//
// Placement (placement.go): by default the scheduler places the tracer
// thread. With PlaceFollow it is pinned to the CPU its tracee last ran on
// and runs at SCHED_IDLE, so that a hit is a ping-pong on one CPU: the
// trap wakes the tracer on the CPU the tracee just left, and PTRACE_CONT
// makes the tracee preempt the tracer at once (the tracer finishes its
// round, back into waitid, while the tracee runs). Measured on a 2-CPU
// paravirtualised guest: ~20-30 % less per hit than the default. The cost:
// on a CPU saturated by another process the pinned, idle-weight tracer
// gets little CPU and the tracee's hits wait for it.
//
// # New processes (newproc.go)
//
// Watch marks the watched file with fanotify (core/fanotify) before it
// scans /proc: FAN_OPEN_EXEC_PERM for a program, FAN_OPEN_PERM for a shared
// library (both for an ET_DYN with an interpreter not flagged PIE). A
// process that is not traced and execs the file is held in execve while the
// handler has the tracer seize its threads (its old image is still in
// place); once allowed, the exec reports PTRACE_EVENT_EXEC before the first
// instruction of the new image, and the exec path below builds its MM. A
// process that opens a watched library is attached while held in open(2)
// and stays traced for a short "expect" window although it maps nothing
// watched yet; the loader's r_brk brings the library in. Events of traced
// processes need nothing (their exec event follows). Every event is
// answered (a dead-man's switch in core/fanotify). Unwatch removes the
// marks. Without fanotify (fanotify.Available, Options.NoFanotify) a /proc
// rescan every Options.RescanInterval attaches new processes, and the log
// says once that their early hits may be missed.
//
// # Libraries: the loader's r_brk (rdebug.go)
//
// Every traced process with a glibc-like loader (AT_BASE) gets an internal
// breakpoint on _dl_debug_state (not an engine uprobe). On a hit with
// r_debug.r_state RT_CONSISTENT — after the mapping of a dlopen (or of the
// start-up libraries) and before any constructor, after the unmapping of a
// dlclose — the tracer diffs /proc/PID/maps against the MM: gone VMAs leave
// through RemoveVMALocked + MunmapHook without any write (the range may
// map something else by now), new mappings of watched inodes enter through
// InsertVMALocked + MmapHook. Between an unmapping and that hit the MM is
// stale, so every breakpoint write first checks that the range still maps
// the uprobe's file at its offset (/proc/PID/map_files) and reports the VMA
// as gone (ESRCH) otherwise. A munmap that the loader does not announce is
// seen at the next r_brk or exit only (known limit; the check above keeps
// it from writing into a new mapping).
//
// # Lifecycle
//
// clone: the new thread is traced in its process. fork: the child gets a
// new MM whose VMAs go through MmapHook while the parent's mmap_sem is held
// (EEXIST for copied breakpoints); copies of breakpoints removed meanwhile
// are restored from the parent's table of every address it ever had a
// breakpoint at (everBp), and a trap on such a stale copy that slipped
// through restores the original byte and restarts the instruction (the
// child never dies of it). vfork and posix_spawn: the child runs in its
// parent's MM until it execs or exits. A stop of an auto-attached child
// whose creator's event never comes (the creator was killed) is adopted
// from /proc after a second. exec: the old MM's VMAs leave the engine
// (MunmapHook); the new image is traced if it maps a watched inode, else
// detached — also when the process was being detached (the new image may
// map a watched file). exit: the MM leaves the engine and its
// /proc/PID/mem descriptor is closed. A process that maps no watched inode
// any more (Unwatch, dlclose seen at r_brk, end of an expect window) is
// detached: its breakpoints and r_brk restored, every thread interrupted and
// detached at its next stop, keeping any signal it stopped for.
//
// # Locks
//
// The engine's hierarchy (core/probes) plus leaves: process.everMu (the
// history of written addresses, taken by the install hook under mmap_sem),
// process.failMu, process.pokeMu (pending POKEDATA writes, read by
// ReadMemory), addressSpace.mu (the /proc/PID/mem descriptor), the
// tracer's request queue lock and the skip list lock. The tracer thread
// takes mmap_sem for writing for fork, exec, exit, attach, detach and r_brk
// resynchronization (lockMM) and for reading on the hit path (the only
// writer of a real MM's mmap_sem is the tracer itself, so that read never
// waits for a pending writer). Nothing that holds a lock waits for the
// tracer (lockdep checks every wait: class tracer), except a PTRACE_POKEDATA
// write, which the tracer serves holding no lock and deferring the stops it
// reaps (class tracer poke; see poke.go). The fanotify handlers only queue
// requests for the tracer.
package proc
