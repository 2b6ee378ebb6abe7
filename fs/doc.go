// Package fs is the uprobefs filesystem: a go-fuse v2 node tree over a
// manager.Manager. It implements DESIGN.md §1.
//
// # Layout
//
//	<mount>/                      mirror of / (Options.Root)
//	<mount>/DIR/                  a real directory: lists its real entries
//	<mount>/LINK                  a real symlink; an absolute target (and a relative
//	                              one that climbs above the root) is rewritten to
//	                              point inside the mount
//	<mount>/FILE/                 a real regular file appears as a directory:
//	<mount>/FILE/probes             write: register / unregister (one line each);
//	                                read: "NAME LOCATION 0xOFFSET HITS MODE" per probe
//	<mount>/FILE/NAME/              one probe
//	<mount>/FILE/NAME/hits            hit count (decimal)
//	<mount>/FILE/NAME/events          stream, one line per hit:
//	                                  "SEC.NSEC pid=P tid=T addr=0xVADDR"
//	<mount>/FILE/NAME/status          "pid=P vaddr=0xV installed|pending" or
//	                                  "pid=P skipped: REASON" per process
//	<mount>/.uprobefs/            control directory
//	<mount>/.uprobefs/probes        every probe: "PATH NAME LOCATION 0xOFFSET HITS MODE"
//	<mount>/.uprobefs/stats         "key value" lines: files, probes, hits, errors,
//	                                events_lost, processes, threads, breakpoints,
//	                                the exec profile (exec_*: core/proc's Stats)...
//	<mount>/.uprobefs/errors        every refused request (last 1000):
//	                                "TIME uid=U pid=P ERRNO path=P input="..." reason: ..."
//	<mount>/.uprobefs/files         every probed file: "DEV:INO STATE PATH"
//	                                (STATE present, gone or replaced)
//	<mount>/.uprobefs/inodes/DEV:INO/  the probes of one file by inode (inodes.go):
//	                                probes (read; write -NAME lines), NAME/ (rmdir)
//
// Special files, devices, fifos and sockets are not shown. The mount point
// itself (and anything on this filesystem's device) is not shown inside the
// mirror: a lookup of it is ENOENT, so the mirror never recurses into itself.
//
// # Semantics
//
//   - Identity is the inode: every path to one file (symlinks, hard links)
//     shows the same probes.
//   - probes: each write(2) is one all-or-nothing batch of complete lines
//     (see manager.ParseProbeLines for the forms); at most 64 KiB a write.
//     Opening with O_TRUNC (">") deletes nothing: ">" and ">>" both only add.
//   - events: a reader gets every hit that happens after it opened the file
//     (each reader independently); a read blocks while there is none, like
//     trace_pipe, and is interrupted by a signal (EINTR); opened with
//     O_NONBLOCK it gives EAGAIN instead. A reader more than 4096 events
//     behind loses the oldest and reads a line "# lost N events". Unregistering
//     the probe (or unmounting) ends the stream (end of file).
//   - hits, status and the control files are snapshots taken at open, served
//     with FOPEN_DIRECT_IO (every cat sees the current value).
//   - rmdir NAME unregisters a probe. rm -r NAME works too: unlinking hits,
//     events or status succeeds and does nothing, then rmdir unregisters.
//   - A probe belongs to an inode: after rm of the file, or a rename over
//     its path, it stays (and counts) but the path no longer leads to it;
//     .uprobefs/inodes/DEV:INO reaches it, status starts with a
//     "file gone: ..." line, and removing the last one releases the inode.
//   - Callers other than root (possible with --allow-other) may register only
//     where every process mapping the file has their uid (see
//     manager.Manager.ApplyAs), remove only their own probes, and see only their
//     own processes in events, status and errors.
//
// # Errors
//
// Every refusal is an errno for the system call and a line in
// .uprobefs/errors with the reason:
//
//	EINVAL   unparsable line, offset outside executable code or past EOF,
//	         not on an instruction boundary, instruction refused, bad name,
//	         a write without a probe line (a 0-byte write never arrives),
//	         write larger than 64 KiB, line longer than 4096, NUL byte,
//	         overflow, negative offset ("-1"), "08" (not octal)
//	ENOENT   unknown symbol, unknown probe name (-NAME), no such file
//	EEXIST   a probe of that name exists on the file
//	ENOEXEC  not an x86-64 ELF file (or not a regular file)
//	EISDIR   DIR/probes of a directory: any lookup (open, create, stat)
//	ENOSPC   the probe limit (manager.MaxProbes)
//	EACCES   opening a read-only file (hits, events, status, control files) for writing
//	EPERM    mkdir, create, mknod, symlink, link, rename, setattr, unlink
//	         anywhere but a probe's own files; caller may not trace a process
//	         that maps the file, or remove another user's probe
//	EDEADLK  the writing process maps the file it probes, or the daemon does
//	         (its own executable, <mount>/proc/self/exe)
//	EAGAIN   events opened O_NONBLOCK with nothing to read
//	EINTR    a blocked events read was interrupted
//
// It imports core/manager (and core/rmap for identities) and go-fuse: every
// core error becomes an errno in one place (errnoOf).
package fs
