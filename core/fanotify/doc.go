// Package fanotify holds processes at the exec or open of watched files until
// the tracer has attached to them, using fanotify permission events.
//
// It is the "new processes" half of discovery in the real world (DESIGN.md
// §4): the kernel's uprobes see every mmap, so a process that execs a probed
// binary, or loads a probed library, after registration is probed before it
// runs the file's code. We cannot see mmaps, but we can see opens: a Watcher
// puts fanotify marks (FAN_CLASS_CONTENT) on individual files, by inode:
//
//   - Add(path, true) marks FAN_OPEN_EXEC_PERM: reported when execve(2)
//     opens the file as the new program image (or as the interpreter of one).
//   - Add(path, false) marks FAN_OPEN_PERM: reported on every open(2) of the
//     file, in particular the dynamic loader's open before it maps a shared
//     library (at start-up or dlopen).
//
// For each permission event the Watcher calls the Handler with the opening
// process's pid and the file's identity (dev, ino from fstat of the event's
// fd; Dev is st_dev, as in unix.Stat_t). The process stays blocked in its
// syscall until the event is answered; it is answered FAN_ALLOW when the
// Handler returns.
//
// # What is guaranteed
//
//   - No process is ever left blocked and none is ever denied. Every event the
//     Watcher reads is answered FAN_ALLOW exactly once: when its Handler
//     returns (or panics: the panic is recovered and logged), when the
//     dead-man's switch fires Options.Deadline after the event was read, or at
//     Close — whichever comes first. A later return of the Handler writes
//     nothing (the event's fd has been answered and closed). Events still
//     queued in the kernel when Close closes the group are allowed by the
//     kernel itself.
//   - At an exec event the process is inside execve(2) before the point of no
//     return: its old image is still in place (/proc/PID/exe is the old
//     program), nothing of the new image is mapped and no instruction of it
//     has run. A tracer may PTRACE_SEIZE the pid from the Handler (seizing
//     does not need a stop); once the event is allowed the exec completes,
//     and a tracer that set PTRACE_O_TRACEEXEC gets PTRACE_EVENT_EXEC with
//     the new image mapped and before its first instruction (the loader's or
//     the binary's entry point).
//   - At an open event of a library the file is opened but not yet mapped: a
//     tracer attached in the Handler sees the mapping that follows.
//   - Events of our own process (pid == getpid) are allowed at once without
//     calling the Handler, so the daemon reading a probed file (ELF symbols,
//     instruction bytes) never waits on itself. So are, by default, events
//     of our own children that still share our memory (kcmp KCMP_VM), that
//     is Go os/exec children between vfork and exec (Options.HoldOwnChildren
//     holds them like any other process).
//   - Handlers of different events run concurrently, one goroutine each, so a
//     slow attach does not hold other processes.
//   - Marks are on inodes: every path and hard link of the file is watched,
//     a rename keeps the mark, and a file replaced at its path (new inode) is
//     not watched any more. Marks last until Remove/RemoveInode or Close.
//
// # What is not guaranteed
//
//   - After Deadline the process runs whether or not the tracer is attached:
//     early hits of that process may be missed. The log says so (Warn).
//   - Only opens are seen. A file opened before its mark (or an inherited or
//     passed fd) and mapped later, or a process that was already running when
//     the mark was added, is not held: the caller must find those by a
//     /proc rescan and by following mmaps of traced processes (r_debug).
//   - FAN_OPEN_PERM fires for every open, not only for loads (cat, ldconfig,
//     a backup tool): the Handler sees events of processes that may never
//     map the file and must cope. A file marked for both exec and open gives
//     two events at an exec (Exec true, then Exec false).
//   - An allowed exec may still fail (ENOEXEC, missing interpreter, SIGKILL):
//     the Handler must not assume PTRACE_EVENT_EXEC follows.
//   - Pid is the thread-group id. An exec from a non-leader thread is reported
//     with the tgid; the execing thread takes that id when the exec succeeds.
//   - The blocked process waits killably: SIGKILL ends the wait, and the later
//     answer fails with ENOENT (logged at Debug).
//   - This process must not exec marked files itself with os/exec (or
//     os.StartProcess) more than GOMAXPROCS-1 at a time, and not at all with
//     GOMAXPROCS=1: Go starts a child with vfork, and the parent thread waits
//     for the child's exec in a raw clone syscall, signals blocked, holding
//     its P. While the exec waits for its answer, that P is lost; when all
//     are, no goroutine runs — not the reader, not the dead-man's switch —
//     and the process and its children hang for ever. Allowing our own
//     children without the Handler (the default) shortens each hold to the
//     reader's latency but cannot remove it. The daemon does not exec
//     probed files; a test that wants a fixture held starts it through a
//     small C launcher that execs it when told (testdata/launch.c), or
//     execs fixtures one at a time with GOMAXPROCS >= 2. New logs a warning
//     when GOMAXPROCS < 2.
//   - A child of the daemon between fork and exec holds a copy of the
//     group's fd (close-on-exec takes effect only when its exec completes).
//     If such a child is held and the daemon dies, the group outlives the
//     daemon and the child stays blocked until it is killed. Close therefore
//     flushes the marks and answers the queue itself rather than relying on
//     the kernel's release of the group.
//   - Another fanotify listener of the same or higher class (a virus scanner)
//     can still deny or delay the open; that is outside this package.
//   - fanotify permission events need CAP_SYS_ADMIN (in the initial user
//     namespace), Linux >= 5.0 for FAN_OPEN_EXEC_PERM and a kernel with
//     CONFIG_FANOTIFY_ACCESS_PERMISSIONS; some filesystems (proc, sysfs, ...)
//     refuse permission marks (Add fails). Available reports why events do
//     not work here; then the caller must fall back to /proc rescans and log
//     that early hits of new processes may be missed.
//
// # Locks and lifetime
//
// Watcher.marksMu guards the marks; Watcher.mu guards the pending events and
// every answer. They are never held together. The reader loop (one goroutine)
// reads events, fstats their fds, registers them as pending (with a
// dead-man's timer) and starts their Handler goroutine; it never waits on a
// Handler. Close wakes it through an eventfd, waits for it to exit, flushes
// the marks, answers what is still queued or pending and only then closes
// the fanotify fd, so no answer is ever written to a closed (or reused) fd,
// and each event fd is answered and closed exactly once (request.answered). Close does not wait for
// Handlers still running (a Handler that never returns is the case the
// dead-man's switch exists for); their later return is ignored.
//
// It imports only the standard library and golang.org/x/sys/unix; core/proc
// uses it.
package fanotify
