// Package manager is the facade the filesystem (package fs) uses over the
// uprobes engine: it turns "write this line into the probes file of that
// path" into core/probes Register and Unregister calls on the file's inode,
// keeps the named probes of every file, their event streams, a log of
// refused requests, and the statistics of the control directory.
//
// It owns, one concern a file:
//
//   - parse.go: the probes-file line grammar (ParseProbeLines, Op), names
//     and canonical locations; quoted.go: quoted symbols ("github.com/x/y.F")
//     and their default names; contract.go: checks of the documented
//     contract ("-1" is a negative offset, no probe on the daemon's own
//     files).
//   - glob.go: wildcards: PATTERN lines (one probe per matching function
//     symbol) and -PATTERN removals, their limit and refusals.
//   - args.go: fetch arguments (p:NAME LOCATION FETCHARGS) formatted into
//     events; ret.go: return probes (r:, %return), their events and
//     latency; goret.go: return probes on return instructions (Go programs,
//     C++ exception tables).
//   - reach.go: which processes a caller's probe reaches (--allow-other:
//     the world's predicate, the consumer filter, read permission).
//   - cgroup.go: cgroup= filters.
//   - filter.go: process filters (pid=, comm= after a location), one per
//     file, handed to a WorldFilterer before the file's Watch.
//   - errors.go: Error (an errno and a reason a person can read), the
//     conversion of core errors, the error log (Refuse, Errors); errlog.go:
//     its bounds (an excerpt per entry, a bounded total).
//   - escape.go: the escaping of outside fields, so one entry is one line.
//   - perm.go: who may do what (Caller; the --allow-other rules: ptrace-like
//     uid checks, EDEADLK for a writer that maps the file) and which
//     processes a caller sees.
//   - ring.go: the event ring of a probe and its per-reader subscriptions,
//     and the budget all rings of a Manager share.
//   - status.go, stats.go: the status lines of a probe and the counters.
//   - lifecycle.go: probes of a file whose path no longer leads to it
//     (removed, renamed over): PathState, Files, and ApplyInode, which
//     removes probes by inode.
//   - manager.go: the Manager, its probes, and ApplyAs (stage, check,
//     watch, register, commit) with its rollback; Close.
//
// It may import core/probes, core/rmap, core/objfile, core/install and
// internal/procfs (for /proc), never core/proc: the world under the engine
// is the World interface (core/proc.World in production, core/sim in
// tests).
//
// # Lock order
//
// Outermost first:
//
//	Manager.applyMu            read by every change (ApplyAs, ApplyInode, Remove), written by Close
//	  -> fileLock.mu           serialises the changes of one file (filelock.go);
//	                           changes to different files run at once
//	  -> World.Watch/Unwatch, Engine.Register/Unregister (and their locks:
//	     i_mutex -> mmap_sem -> i_mmap_mutex -> uprobes_mmap_mutex -> treelock)
//	Manager.mu                 a leaf: held only to read or swap the maps
//	EventRing.mu               a leaf, taken on the hit path by Push
//
// Manager.mu is never held across a call into the Engine or the World, so a
// slow registration (attaching many processes) never blocks readers of hits,
// status or the listings.
package manager
