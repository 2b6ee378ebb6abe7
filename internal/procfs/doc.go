// Package procfs reads what uprobefs needs of /proc, in one place: a
// process's mappings (/proc/PID/maps, with a byte filter that finds the
// processes mapping a file without parsing every maps file), its status
// fields (/proc/PID/status and /proc/PID/task/TID/status: ids, tracer,
// state, uids, signal masks), its auxiliary vector, and the lists of
// processes and threads.
//
// Files are read with plain open/read/close system calls into pooled
// buffers (ReadFile): os.ReadFile and os.Open also stat the file and
// register the descriptor with the Go runtime's poller, several system
// calls more per file, which made half of a registration's time when many
// processes map the probed file.
//
// It owns no state but the buffer pool and a once-computed check of the
// maps format; every function is safe for concurrent use. It imports only
// the standard library and golang.org/x/sys/unix, and is used by
// core/manager (permissions, visibility) and core/proc (discovery,
// attach, lifecycle).
package procfs
