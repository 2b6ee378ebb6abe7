package proc

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"time"

	"github.com/uprobefs/uprobefs/core/fanotify"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// New processes: processes that exec a watched file, or open a watched
// library, while not traced. Watch marks the file with fanotify (see
// core/fanotify): FAN_OPEN_EXEC_PERM for an executable, FAN_OPEN_PERM for a
// shared library (both for an ET_DYN with an interpreter that is not marked
// PIE). The process stays blocked in execve (or open) until our handler
// returns:
//
//   - exec: the handler has the tracer seize every thread of the process
//     (no stop; its old image is still in place) and returns. The exec then
//     completes and reports PTRACE_EVENT_EXEC before the first instruction
//     of the new image, where execed builds the MM, feeds its mappings to
//     MmapHook and puts the r_brk breakpoint (rdebug.go) — the same path as
//     an exec of an already traced process. If no exec event comes within
//     pendExecTimeout (the exec failed), the threads are detached.
//   - library open: the handler attaches the process as Watch does (its MM
//     has no mapping of the library yet) and lets it be "expecting" for
//     expectWindow: it stays traced although it maps no watched inode, and
//     the loader's next r_brk with r_state RT_CONSISTENT, after the mapping
//     and before any constructor, brings the library's VMAs in. When the
//     window ends, the maps are read once more and a process that still maps
//     no watched inode is detached.
//
// Where fanotify does not work (fanotify.Available, or Options.NoFanotify),
// a goroutine rescans /proc every Options.RescanInterval for processes that
// map a watched inode and are not traced; the log says once that early hits
// of new processes may be missed.

const (
	// pendExecTimeout bounds the wait for the exec event of a process
	// seized at its exec.
	pendExecTimeout = 5 * time.Second
	// expectWindow is how long a process that opened a watched library
	// stays traced without mapping it.
	expectWindow = 2 * time.Second
	// orphanAdopt is how long a stop of an auto-attached tid waits for
	// its creator's event before it is adopted from /proc.
	orphanAdopt = time.Second
)

// markKinds decides the fanotify marks of the file at path: exec for a
// program (ET_EXEC, PIE), open for a shared library.
func markKinds(path string) (exec, open bool) {
	f, err := elf.Open(path)
	if err != nil {
		return true, true
	}
	defer f.Close()
	switch f.Type {
	case elf.ET_EXEC:
		return true, false
	case elf.ET_DYN:
		interp := false
		for _, ph := range f.Progs {
			if ph.Type == elf.PT_INTERP {
				interp = true
			}
		}
		if vals, err := f.DynValue(elf.DT_FLAGS_1); err == nil {
			for _, v := range vals {
				if v&uint64(elf.DF_1_PIE) != 0 && interp {
					return true, false
				}
			}
		}
		return interp, true
	}
	return true, true
}

// startDiscovery starts the fanotify watcher (or notes why it cannot).
func (w *World) startDiscovery() {
	if w.opts.NoFanotify {
		w.fanErr = errors.New("fanotify disabled by the options")
		return
	}
	if err := fanotify.Available(); err != nil {
		w.fanErr = err
		return
	}
	log := slog.New(slog.NewTextHandler(logWriter{w}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fw, err := fanotify.New(w.onFanotify, fanotify.Options{Log: log})
	if err != nil {
		w.fanErr = err
		return
	}
	w.fan = fw
}

// logWriter sends the fanotify package's records to Options.Log.
type logWriter struct{ w *World }

func (l logWriter) Write(b []byte) (int, error) {
	l.w.log("%s", string(trimNL(b)))
	return len(b), nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	return b
}

// mark marks the watched file at path so that new processes are held.
// Where the file cannot be marked (a filesystem refusing permission
// events), new processes are found by the /proc rescan instead.
func (w *World) mark(in *rmap.Inode, path string) error {
	if w.fan == nil {
		w.startRescan()
		return nil
	}
	ex, op := markKinds(path)
	var err error
	if ex {
		err = w.fan.Add(path, true)
	}
	if op && err == nil {
		err = w.fan.Add(path, false)
	}
	if err != nil {
		w.fan.RemoveInode(in.Key.Dev, in.Key.Ino)
		if errors.Is(err, fanotify.ErrClosed) {
			return err
		}
		w.log("watch %s: %v", path, err)
		w.startRescan()
	}
	return nil
}

// unmark removes the marks of in.
func (w *World) unmark(in *rmap.Inode) {
	if w.fan != nil {
		if err := w.fan.RemoveInode(in.Key.Dev, in.Key.Ino); err != nil &&
			!errors.Is(err, fanotify.ErrNotMarked) && !errors.Is(err, fanotify.ErrClosed) {
			w.errorf("unwatch: %v", err)
		}
	}
}

// onFanotify is the fanotify handler: pid is blocked in the exec or open
// of a marked file until it returns.
func (w *World) onFanotify(ev fanotify.Event) {
	if ev.Pid <= 0 || w.closed.Load() {
		return
	}
	if ev.Exec && ev.Tid > 0 {
		// A traced thread's exec is followed by its exec event: nothing
		// to do, and nothing to wait for (the tracer may itself be
		// waiting for this thread to stop, which it cannot while its
		// exec is held here).
		if st, err := procfs.ReadStatus(fmt.Sprintf("/proc/%d/task/%d/status", ev.Pid, ev.Tid)); err == nil && st.TracerPid == w.t.tid {
			return
		}
	}
	k := rmap.InodeKey{Dev: ev.Dev, Ino: ev.Ino}
	t0 := time.Now()
	w.t.do(func() { w.heldOpen(ev.Pid, ev.Tid, k, ev.Exec) })
	if ev.Exec {
		spent(&w.execProf.fans, &w.execProf.fan, t0)
	}
}

// heldOpen attaches pid, whose thread tid is blocked in the exec (exec) or
// open of the watched inode k, unless it is traced already; after an open
// it follows tid's mmaps (syscalls.go). Preconditions: on the tracer thread.
func (w *World) heldOpen(pid, tid int, k rmap.InodeKey, exec bool) {
	if w.closed.Load() || w.watched[k] == nil {
		return
	}
	if th := w.threads[pid]; th != nil {
		// Traced: an exec is followed by its event; a library open by
		// the loader's r_brk, or by following the opening thread's
		// mmaps (a plain mmap of the file).
		if !exec && th.proc != nil && !th.proc.detaching {
			w.expect(th.proc)
			if t := w.threads[tid]; t != nil && t.proc == th.proc {
				w.followMaps(t)
			}
		}
		return
	}
	if _, ok := w.orphans[pid]; ok {
		return // auto-attached, announced soon
	}
	if exec {
		if err := w.attachExec(pid); err != nil && !errors.Is(err, syscall.ESRCH) {
			w.recordSkip(k, pid, err.Error())
			w.log("exec of a watched file: pid %d not traced: %v", pid, err)
		}
		return
	}
	if !w.selects(k, pid) {
		return // not selected by the inode's filter (filter.go)
	}
	p, err := w.attach(pid, nil)
	if err != nil {
		if !errors.Is(err, syscall.ESRCH) {
			w.recordSkip(k, pid, err.Error())
			w.log("open of a watched file: pid %d not traced: %v", pid, err)
		}
		return
	}
	w.expect(p)
	if t := w.threads[tid]; t != nil && t.proc == p {
		w.followMaps(t)
	}
}

// startRescan starts the fallback /proc rescan (once).
func (w *World) startRescan() {
	w.rescanOnce.Do(func() {
		why := w.fanErr
		if why == nil {
			why = errors.New("a watched file cannot be marked")
		}
		w.log("new processes are found by /proc rescans every %v (%v): early hits of new processes may be missed", w.opts.RescanInterval, why)
		ctx, cancel := context.WithCancel(context.Background())
		w.rescanStop = cancel
		w.rescanDone = make(chan struct{})
		go w.rescan(ctx)
	})
}

// rescan attaches, every RescanInterval, the untraced processes that map a
// watched inode.
func (w *World) rescan(ctx context.Context) {
	defer close(w.rescanDone)
	tk := time.NewTicker(w.opts.RescanInterval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		var keys []procfs.FileID
		var known map[int]bool
		if w.t.do(func() {
			for k := range w.watched {
				keys = append(keys, procfs.FileID(k))
			}
			known = make(map[int]bool, len(w.procs))
			for pid := range w.procs {
				known[pid] = true
			}
		}) != nil {
			return
		}
		if len(keys) == 0 {
			continue
		}
		pids, maps, err := procfs.PidsMappingMaps(keys, known)
		if err != nil || len(pids) == 0 {
			continue
		}
		w.t.do(func() {
			groups := newScanned(pids, maps)
			for _, pid := range pids {
				if w.threads[pid] != nil {
					continue
				}
				if _, ok := w.orphans[pid]; ok {
					continue
				}
				if !w.selectsMapped(pid) {
					continue // no filter of what it maps selects it (filter.go)
				}
				_, err := w.attach(pid, groups)
				switch {
				case err == nil:
					w.log("rescan: pid %d attached", pid)
				case !errors.Is(err, syscall.ESRCH):
					// Recorded for the watched inodes it maps.
					for k := range w.watched {
						if procfs.PidMaps(pid, procfs.FileID(k)) {
							w.recordSkip(k, pid, err.Error())
						}
					}
				}
			}
		})
	}
}
