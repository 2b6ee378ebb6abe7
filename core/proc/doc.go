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
//
// # Hits
//
// A SIGTRAP with si_code SI_KERNEL whose rip-1 is in the process's
// breakpoint table (filled by the engine's Install/Remove hooks, see
// EngineOptions; equivalent to LookupLocked under mmap_sem without taking
// it) is a hit: Dispatch, then step over without removing the breakpoint:
// emulate (install.Plan.Emulate; for nop/endbr64 just rip via POKEUSER), or
// set rip to the instruction's slot in an XOL page mapped into the process
// by an injected mmap (xol.go). One trap per hit, no single-step. A trap on
// an address whose breakpoint was just removed restarts the instruction; any
// other SIGTRAP is delivered to the program. Other signals pass through;
// group-stops (SIGSTOP, SIGTSTP...) are kept with PTRACE_LISTEN until
// SIGCONT.
//
// # Lifecycle
//
// clone: the new thread is traced in its process. fork: the child gets a
// new MM whose VMAs go through MmapHook while the parent's mmap_sem is held
// (EEXIST for copied breakpoints); copies of breakpoints removed meanwhile
// are restored. vfork: the child runs in its parent's MM until it execs.
// exec: the old MM's VMAs leave the engine (MunmapHook); the new image is
// traced if it maps a watched inode, else detached. exit: the MM leaves the
// engine. A process that maps no watched inode any more (Unwatch) is
// detached: its breakpoints restored, every thread interrupted and detached
// at its next stop, keeping any signal it stopped for.
//
// # Locks
//
// The engine's hierarchy (core/probes) plus: process.bpMu, a leaf taken by
// the install/remove hooks under mmap_sem and alone by the hit path;
// addressSpace.mu, a leaf guarding the /proc/PID/mem descriptor; the
// tracer's request queue lock and the skip list lock, leaves. The tracer
// thread takes mmap_sem (write) for fork, exec, exit, attach and detach,
// never on the hit path; nothing that holds an mmap_sem waits for the tracer
// except the PTRACE_POKEDATA fallback (see poke.go).
//
// # Not done (issue 5)
//
// Processes that exec or mmap a watched file without being traced already
// (fanotify), dlopen/dlclose tracking (r_brk), exact rmap updates on
// mmap/munmap inside traced processes.
package proc
