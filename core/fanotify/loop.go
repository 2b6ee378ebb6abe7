package fanotify

import (
	"bytes"
	"errors"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const permMask = unix.FAN_OPEN_PERM | unix.FAN_OPEN_EXEC_PERM

// loop is the reader: it reads events until Close writes w.wake. It never
// blocks on a Handler.
func (w *Watcher) loop() {
	defer close(w.done)
	// Aligned for the metadata structs; room for ~680 events a read.
	buf := make([]uint64, 2048)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*8)
	fds := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}, {Fd: int32(w.wake), Events: unix.POLLIN}}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			// EFAULT/EINVAL/ENOMEM: nothing sensible left but to stop;
			// Close still answers what is pending.
			w.st.errors.Add(1)
			w.log.Error("fanotify: poll failed; reader stops", "err", err)
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		for {
			n, err := unix.Read(w.fd, b)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) {
					break
				}
				if errors.Is(err, unix.EINTR) {
					continue
				}
				// For example EMFILE: the kernel could not open the event's
				// fd. The event is gone from the queue; go on with the rest.
				w.st.errors.Add(1)
				w.log.Error("fanotify: read", "err", err)
				break
			}
			w.parse(b[:n])
		}
	}
}

// parse handles the events in one read.
func (w *Watcher) parse(b []byte) {
	for len(b) >= unix.FAN_EVENT_METADATA_LEN {
		m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&b[0]))
		l := int(m.Event_len)
		if l < unix.FAN_EVENT_METADATA_LEN || l > len(b) {
			// Cannot happen (the kernel writes whole events).
			w.st.errors.Add(1)
			w.log.Error("fanotify: malformed event", "len", l, "left", len(b))
			return
		}
		if m.Vers != unix.FANOTIFY_METADATA_VERSION {
			w.st.errors.Add(1)
			w.log.Error("fanotify: unknown metadata version", "version", m.Vers)
			// The fd and the answer format may differ: touch nothing.
			b = b[l:]
			continue
		}
		w.event(m)
		b = b[l:]
	}
}

// event handles one event. Preconditions: called by the reader only.
func (w *Watcher) event(m *unix.FanotifyEventMetadata) {
	fd := int(m.Fd)
	if fd == unix.FAN_NOFD {
		if m.Mask&unix.FAN_Q_OVERFLOW != 0 {
			w.st.overflow.Add(1)
			w.log.Warn("fanotify: queue overflow: some processes were not held (early hits may be missed)")
		}
		return
	}
	if m.Mask&permMask == 0 {
		unix.Close(fd) // not a permission event: nothing to answer
		return
	}
	w.st.events.Add(1)
	// FAN_REPORT_TID: the event names the opening thread.
	tid := int(m.Pid)
	pid := tgidOf(tid)
	if pid == w.self || (!w.holdOwn && w.sharesOurMemory(pid)) {
		w.st.self.Add(1) // counted before the process can go on
		w.respond(fd)
		return
	}
	// The fd is ours until answered; read its identity now, before a
	// dead-man's switch could close it (and its number be reused).
	ev := Event{Pid: pid, Tid: tid, Exec: m.Mask&unix.FAN_OPEN_EXEC_PERM != 0}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil {
		ev.Dev, ev.Ino = st.Dev, st.Ino
	} else {
		w.log.Debug("fanotify: fstat event fd", "pid", ev.Pid, "err", err)
	}
	if p, err := os.Readlink(fdPath(fd)); err == nil {
		ev.Path = p
	}
	r := &request{fd: fd, ev: ev}
	w.mu.Lock()
	w.pending[r] = struct{}{}
	r.timer = newDeadman(w, r)
	w.mu.Unlock()
	go w.handle(r)
}

func (w *Watcher) handle(r *request) {
	defer func() {
		if p := recover(); p != nil {
			w.st.panics.Add(1)
			w.log.Error("fanotify: handler panicked; process allowed", "pid", r.ev.Pid, "path", r.ev.Path,
				"panic", p, "stack", string(debug.Stack()))
		}
		w.mu.Lock()
		answered := w.answerLocked(r, &w.st.handled)
		w.mu.Unlock()
		if !answered {
			w.st.late.Add(1)
			w.log.Debug("fanotify: handler returned after the event was answered", "pid", r.ev.Pid, "path", r.ev.Path)
		}
	}()
	w.h(r.ev)
}

// answerLocked answers r FAN_ALLOW unless it was answered already, and
// reports whether it did; if it did, it counts the answer in how first (so
// the count is visible once the process goes on). Preconditions: w.mu held;
// w.fd open (Close closes it only after answering every pending event under
// w.mu).
func (w *Watcher) answerLocked(r *request, how *atomic.Uint64) bool {
	if r.answered {
		return false
	}
	r.answered = true
	delete(w.pending, r)
	r.timer.Stop()
	how.Add(1)
	w.respond(r.fd)
	return true
}

// respond writes FAN_ALLOW for the event fd and closes fd. The caller
// guarantees it is called once per event fd.
func (w *Watcher) respond(fd int) {
	resp := unix.FanotifyResponse{Fd: int32(fd), Response: unix.FAN_ALLOW}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&resp)), unsafe.Sizeof(resp))
	if _, err := unix.Write(w.fd, b); err != nil {
		// ENOENT: the waiter is gone (killed); nothing is blocked.
		if !errors.Is(err, unix.ENOENT) {
			w.st.errors.Add(1)
			w.log.Error("fanotify: answer", "err", err)
		} else {
			w.log.Debug("fanotify: answer: waiter gone", "err", err)
		}
	}
	unix.Close(fd)
}

// newDeadman starts r's dead-man's switch: FAN_ALLOW after w.deadline if
// nothing answered r before. Preconditions: w.mu held (so the timer is set
// before it can fire into answerLocked).
func newDeadman(w *Watcher, r *request) *time.Timer {
	return time.AfterFunc(w.deadline, func() {
		w.mu.Lock()
		answered := w.answerLocked(r, &w.st.deadline)
		w.mu.Unlock()
		if answered {
			w.log.Warn("fanotify: dead-man's switch: process allowed before the handler returned (early hits may be missed)",
				"pid", r.ev.Pid, "path", r.ev.Path, "exec", r.ev.Exec, "deadline", w.deadline)
		}
	})
}

// drain answers FAN_ALLOW to every event still queued. Preconditions: the
// reader has exited; called by Close only.
func (w *Watcher) drain() {
	buf := make([]uint64, 512)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*8)
	for {
		n, err := unix.Read(w.fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			if !errors.Is(err, unix.EAGAIN) {
				w.st.errors.Add(1)
				w.log.Error("fanotify: drain", "err", err)
			}
			return
		}
		for p := b[:n]; len(p) >= unix.FAN_EVENT_METADATA_LEN; {
			m := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&p[0]))
			l := int(m.Event_len)
			if l < unix.FAN_EVENT_METADATA_LEN || l > len(p) || m.Vers != unix.FANOTIFY_METADATA_VERSION {
				break
			}
			if fd := int(m.Fd); fd != unix.FAN_NOFD {
				if m.Mask&permMask != 0 {
					w.st.events.Add(1)
					w.st.closed.Add(1)
					w.respond(fd)
				} else {
					unix.Close(fd)
				}
			}
			p = p[l:]
		}
	}
}

// kcmpVM is KCMP_VM of <linux/kcmp.h>.
const kcmpVM = 1

// sharesOurMemory reports whether pid is a child of ours that still shares
// our address space: a Go os/exec child between vfork and exec, whose
// parent thread holds one of our Ps until the exec completes.
func (w *Watcher) sharesOurMemory(pid int) bool {
	r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(w.self), uintptr(pid), kcmpVM, 0, 0, 0)
	if e == 0 {
		return r == 0
	}
	if e == unix.ESRCH {
		return false
	}
	// No kcmp (CONFIG_KCMP off): a child of ours running our image.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(s[i+1:]) // state ppid ...
	if len(f) < 2 || f[1] != strconv.Itoa(w.self) {
		return false
	}
	a, err1 := os.Stat("/proc/self/exe")
	c, err2 := os.Stat("/proc/" + strconv.Itoa(pid) + "/exe")
	return err1 == nil && err2 == nil && os.SameFile(a, c)
}

// tgidOf returns the thread-group id of the thread tid (tid itself when
// /proc does not say: the thread is gone, or is a leader).
func tgidOf(tid int) int {
	if tid <= 0 {
		return tid
	}
	var buf [512]byte
	fd, err := unix.Open("/proc/"+strconv.Itoa(tid)+"/status", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return tid
	}
	n, _ := unix.Read(fd, buf[:])
	unix.Close(fd)
	b := buf[:max(n, 0)]
	i := bytes.Index(b, []byte("\nTgid:"))
	if i < 0 {
		return tid
	}
	b = bytes.TrimLeft(b[i+len("\nTgid:"):], " \t")
	if j := bytes.IndexByte(b, '\n'); j >= 0 {
		b = b[:j]
	}
	if v, err := strconv.Atoi(string(b)); err == nil && v > 0 {
		return v
	}
	return tid
}
