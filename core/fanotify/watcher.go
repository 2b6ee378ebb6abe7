package fanotify

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultDeadline is the dead-man's switch used when Options.Deadline is 0.
const DefaultDeadline = 2 * time.Second

// Errors returned by the Watcher's methods (wrapped with context).
var (
	// ErrClosed is returned by Add, Remove and RemoveInode after Close.
	ErrClosed = errors.New("fanotify: watcher closed")
	// ErrNotMarked is returned by Remove and RemoveInode for a file that
	// this Watcher has not marked.
	ErrNotMarked = errors.New("fanotify: file not marked")
)

// Event is one permission event: a process is blocked opening a marked file.
type Event struct {
	Pid      int    // thread-group id of the opening process (0 if it is outside our pid namespace)
	Tid      int    // the opening thread (FAN_REPORT_TID); Pid when that is not known
	Dev, Ino uint64 // identity of the opened file (fstat of the event's fd; Dev is st_dev)
	Exec     bool   // FAN_OPEN_EXEC_PERM (execve opens it as a program) rather than FAN_OPEN_PERM
	Path     string // the file's path as the kernel sees it (readlink of the event fd); informative only
}

// Handler is called once for each permission event, on its own goroutine.
// The process stays blocked until the Handler returns (or panics, or the
// dead-man's switch fires, or the Watcher is closed); then the event is
// answered FAN_ALLOW. Handlers must be safe for concurrent use.
type Handler func(ev Event)

// Options configure a Watcher. The zero value means the defaults.
type Options struct {
	// Deadline is the dead-man's switch: an event whose Handler has not
	// returned Deadline after the event was read is answered FAN_ALLOW
	// anyway. 0 means DefaultDeadline.
	Deadline time.Duration
	// Log receives warnings (dead-man's switch, handler panics, queue
	// overflow) and debug records. nil discards.
	Log *slog.Logger
	// HoldOwnChildren makes the Watcher hold children of this process that
	// still share its memory (a Go os/exec child between vfork and exec)
	// like any other process. By default they are allowed at once, like
	// this process's own opens, because each one pins a P of this Go
	// runtime while it waits (the vforking thread blocks in a raw clone
	// syscall with the P held): with GOMAXPROCS of them waiting nothing
	// runs any more — not the reader, not the dead-man's switch — and the
	// process hangs for ever (see the package doc). Set it only where this
	// process starts at most GOMAXPROCS-1 marked execs at a time (a test
	// that execs fixtures one by one).
	HoldOwnChildren bool
}

// Stats counts what a Watcher has done since New. Every permission event
// read is counted in Events and in exactly one of Self, Handled, Deadline or
// Closed, or is still Pending. An answer is counted before it is written, so
// a process that was let go is already counted.
type Stats struct {
	Events   uint64 // permission events read
	Self     uint64 // allowed at once: our own process (or, see HoldOwnChildren, its vfork child) opened the file
	Handled  uint64 // allowed when the Handler returned (or panicked)
	Deadline uint64 // allowed by the dead-man's switch
	Closed   uint64 // allowed by Close
	Panics   uint64 // Handler panics (the event was allowed all the same)
	Late     uint64 // Handler returns after the event had been answered
	Overflow uint64 // FAN_Q_OVERFLOW reports (events the kernel did not queue)
	Errors   uint64 // failed reads and answers (logged)
	Pending  int    // events held now
}

// Watcher holds processes at the exec or open of marked files. It is safe
// for concurrent use. Create one with New; Close it to release everything.
type Watcher struct {
	h        Handler       // immutable
	deadline time.Duration // immutable
	log      *slog.Logger  // immutable
	self     int           // our pid; immutable
	holdOwn  bool          // Options.HoldOwnChildren; immutable

	// fd is the fanotify group. It is immutable, and closed by Close only
	// after the reader has exited and every pending event has been answered.
	fd int
	// wake is an eventfd; Close writes it to stop the reader. Immutable.
	wake int
	// done is closed when the reader loop has exited.
	done chan struct{}

	closeOnce sync.Once

	marksMu sync.Mutex
	// marks is protected by marksMu.
	marks map[Key]*mark
	// marksClosed is protected by marksMu.
	marksClosed bool

	mu sync.Mutex
	// pending is protected by mu. Invariant: r is in pending iff r is
	// registered and !r.answered.
	pending map[*request]struct{}

	st struct {
		events, self, handled, deadline, closed, panics, late, overflow, errors atomic.Uint64
	}
}

// Key is the identity of a marked file.
type Key struct{ Dev, Ino uint64 }

// mark is one marked inode.
type mark struct {
	fd   int    // O_PATH fd of the inode, used to remove the mark by identity; immutable
	mask uint64 // marked events; protected by Watcher.marksMu
}

// request is one permission event read and not answered at its creation.
type request struct {
	fd    int         // the event's fd; immutable; closed by answer
	ev    Event       // immutable
	timer *time.Timer // dead-man's switch; set under Watcher.mu at registration
	// answered is protected by Watcher.mu.
	answered bool
}

// New creates a fanotify group for permission events and starts its reader.
// h must not be nil. It fails (with the reason Available would give) where
// permission events do not work.
func New(h Handler, o Options) (*Watcher, error) {
	if h == nil {
		return nil, errors.New("fanotify: nil handler")
	}
	if o.Deadline <= 0 {
		o.Deadline = DefaultDeadline
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|
		unix.FAN_UNLIMITED_QUEUE|unix.FAN_UNLIMITED_MARKS|unix.FAN_REPORT_TID,
		unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return nil, initError(err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fanotify: eventfd: %w", err)
	}
	w := &Watcher{
		h:        h,
		deadline: o.Deadline,
		log:      o.Log,
		self:     os.Getpid(),
		holdOwn:  o.HoldOwnChildren,
		fd:       fd,
		wake:     wake,
		done:     make(chan struct{}),
		marks:    make(map[Key]*mark),
		pending:  make(map[*request]struct{}),
	}
	if n := runtime.GOMAXPROCS(0); n < 2 {
		w.log.Warn("fanotify: GOMAXPROCS < 2: an exec of a marked file by this process itself (os/exec) will hang it", "gomaxprocs", n)
	}
	go w.loop()
	return w, nil
}

// Available reports whether fanotify permission events, including
// FAN_OPEN_EXEC_PERM, work here: nil if they do, else an error saying why
// (not privileged, kernel too old or built without permission events). It
// creates and closes a group; it holds no process.
func Available() error {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return initError(err)
	}
	defer unix.Close(fd)
	// A directory cannot be opened for exec, so this mark never fires.
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, "/"); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("fanotify: kernel lacks FAN_OPEN_EXEC_PERM (needs Linux >= 5.0): %w", err)
		}
		return fmt.Errorf("fanotify: permission mark refused: %w", err)
	}
	return nil
}

func initError(err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("fanotify: permission events need CAP_SYS_ADMIN in the initial user namespace: %w", err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("fanotify: kernel without permission events (CONFIG_FANOTIFY_ACCESS_PERMISSIONS): %w", err)
	case errors.Is(err, unix.ENOSYS):
		return fmt.Errorf("fanotify: kernel without fanotify: %w", err)
	}
	return fmt.Errorf("fanotify: fanotify_init: %w", err)
}

// Add marks the regular file at path: with exec, execs of it are held
// (FAN_OPEN_EXEC_PERM); without, every open of it is (FAN_OPEN_PERM, for
// shared libraries). Marks are per inode; adding both kinds to one file
// holds both. Adding a mark the file already has is a no-op. Errors:
// ErrClosed, or the open/mark failure (e.g. EINVAL on a filesystem that
// refuses permission events).
func (w *Watcher) Add(path string, exec bool) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fanotify: add %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return fmt.Errorf("fanotify: add %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return fmt.Errorf("fanotify: add %s: not a regular file", path)
	}
	mask := uint64(unix.FAN_OPEN_PERM)
	if exec {
		mask = unix.FAN_OPEN_EXEC_PERM
	}
	k := Key{Dev: st.Dev, Ino: st.Ino}

	w.marksMu.Lock()
	defer w.marksMu.Unlock()
	if w.marksClosed {
		unix.Close(fd)
		return fmt.Errorf("fanotify: add %s: %w", path, ErrClosed)
	}
	m := w.marks[k]
	if m != nil {
		unix.Close(fd) // keep the first fd of this inode
		if m.mask&mask == mask {
			return nil
		}
	} else {
		m = &mark{fd: fd}
	}
	// Mark through the fd, not the path: it is the inode we checked.
	if err := unix.FanotifyMark(w.fd, unix.FAN_MARK_ADD, mask, unix.AT_FDCWD, fdPath(m.fd)); err != nil {
		if m.mask == 0 {
			unix.Close(m.fd)
		}
		return fmt.Errorf("fanotify: add %s: fanotify_mark: %w", path, err)
	}
	m.mask |= mask
	w.marks[k] = m
	w.log.Debug("fanotify: marked", "path", path, "dev", k.Dev, "ino", k.Ino, "exec", exec)
	return nil
}

// Remove removes every mark of the file now at path (see RemoveInode).
// Errors: ErrNotMarked if that inode is not marked (for example the file was
// replaced at path: remove the old one with RemoveInode), ErrClosed.
func (w *Watcher) Remove(path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("fanotify: remove %s: %w", path, err)
	}
	if err := w.RemoveInode(st.Dev, st.Ino); err != nil {
		return fmt.Errorf("fanotify: remove %s: %w", path, err)
	}
	return nil
}

// RemoveInode removes every mark of the inode (dev, ino): later execs and
// opens of it are not held. Events already read stay held until answered as
// usual. Errors: ErrNotMarked, ErrClosed.
func (w *Watcher) RemoveInode(dev, ino uint64) error {
	k := Key{Dev: dev, Ino: ino}
	w.marksMu.Lock()
	defer w.marksMu.Unlock()
	if w.marksClosed {
		return ErrClosed
	}
	m := w.marks[k]
	if m == nil {
		return fmt.Errorf("dev %d ino %d: %w", dev, ino, ErrNotMarked)
	}
	delete(w.marks, k)
	err := unix.FanotifyMark(w.fd, unix.FAN_MARK_REMOVE, m.mask, unix.AT_FDCWD, fdPath(m.fd))
	unix.Close(m.fd)
	if err != nil {
		return fmt.Errorf("dev %d ino %d: fanotify_mark remove: %w", dev, ino, err)
	}
	return nil
}

// Marks returns the identities of the marked files, in no particular order.
func (w *Watcher) Marks() []Key {
	w.marksMu.Lock()
	defer w.marksMu.Unlock()
	ks := make([]Key, 0, len(w.marks))
	for k := range w.marks {
		ks = append(ks, k)
	}
	return ks
}

// Stats returns the Watcher's counters.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	n := len(w.pending)
	w.mu.Unlock()
	return Stats{
		Events:   w.st.events.Load(),
		Self:     w.st.self.Load(),
		Handled:  w.st.handled.Load(),
		Deadline: w.st.deadline.Load(),
		Closed:   w.st.closed.Load(),
		Panics:   w.st.panics.Load(),
		Late:     w.st.late.Load(),
		Overflow: w.st.overflow.Load(),
		Errors:   w.st.errors.Load(),
		Pending:  n,
	}
}

// Close stops the reader, removes all marks, answers FAN_ALLOW to every
// event read or still queued, and closes the group. It does not wait for
// Handlers that are still running; their return is ignored. Close is
// idempotent: later calls return nil.
func (w *Watcher) Close() error {
	var err error
	w.closeOnce.Do(func() {
		var one [8]byte
		one[0] = 1 // native-endian uint64 1 on x86-64
		if _, werr := unix.Write(w.wake, one[:]); werr != nil {
			// Cannot happen with a fresh eventfd; without the wake-up the
			// reader would never exit, so fail loudly.
			panic(fmt.Sprintf("fanotify: wake reader: %v", werr))
		}
		<-w.done

		// No new events: flush the marks (closing the fd would not be
		// enough while a child of ours, between fork and exec, still holds
		// a copy of it).
		w.marksMu.Lock()
		w.marksClosed = true
		if ferr := unix.FanotifyMark(w.fd, unix.FAN_MARK_FLUSH, 0, unix.AT_FDCWD, ""); ferr != nil {
			w.log.Error("fanotify: flush marks", "err", ferr)
		}
		for k, m := range w.marks {
			unix.Close(m.fd)
			delete(w.marks, k)
		}
		w.marksMu.Unlock()

		w.drain()
		w.mu.Lock()
		for r := range w.pending {
			w.answerLocked(r, &w.st.closed)
		}
		w.mu.Unlock()

		// Closing the group allows whatever was queued after the drain.
		err = unix.Close(w.fd)
		unix.Close(w.wake)
	})
	return err
}

func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }
