package fanotify

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
	"golang.org/x/sys/unix"
)

// Our own opens of a marked file, and by default execs by our own vfork
// children, are allowed at once, without the handler.
func TestSelfNotHeld(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("an own exec of a marked file needs GOMAXPROCS >= 2 (see the package doc)")
	}
	rec := make(recorder, 16)
	w := newWatcher(t, rec.handle, Options{Deadline: time.Minute})
	fx := build(t)
	lib := fixture(t, "testdata/lib.c", "-O2", "-shared", "-fPIC")
	if err := w.Add(lib, false); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(fx.hello, true); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if _, err := os.ReadFile(lib); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	out, err := exec.CommandContext(ctx, fx.hello).Output()
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("own exec: %q, %v", out, err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("own open and exec took %v", d)
	}
	if len(rec) != 0 {
		t.Errorf("handler called for our own open: %+v", <-rec)
	}
	if s := w.Stats(); s.Self != 2 || s.Events != 2 {
		t.Errorf("stats = %+v, want 2 self", s)
	}
}

// With HoldOwnChildren an os/exec child of ours is held (one at a time: each
// pins one of our Ps).
func TestHoldOwnChildren(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs GOMAXPROCS >= 2")
	}
	g := newGate(t)
	w := newWatcher(t, g.handle, Options{Deadline: time.Minute, HoldOwnChildren: true})
	fx := build(t)
	if err := w.Add(fx.hello, true); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(fx.hello)
	var out strings.Builder
	cmd.Stdout = &out
	started := make(chan error, 1)
	go func() { started <- cmd.Start() }()
	t.Cleanup(func() {
		w.Close() // releases the child if still held
		select {
		case err := <-started:
			if err == nil {
				cmd.Process.Kill()
				cmd.Wait()
			}
		case <-time.After(wait):
			t.Error("child never started")
		}
	})
	ev := g.next(t)
	if !ev.Exec || ev.Ino != statKey(t, fx.hello).Ino {
		t.Errorf("event = %+v", ev)
	}
	select {
	case <-started:
		t.Fatal("exec completed while held")
	default:
	}
	close(g.release)
	select {
	case err := <-started:
		started <- err
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("exec still held")
	}
	if ev.Pid != cmd.Process.Pid {
		t.Errorf("pid = %d, want %d", ev.Pid, cmd.Process.Pid)
	}
	if s := w.Stats(); s.Handled != 1 || s.Self != 0 {
		t.Errorf("stats = %+v", s)
	}
}

// A panicking handler still allows the process.
func TestHandlerPanic(t *testing.T) {
	w := newWatcher(t, func(Event) { panic("boom") }, Options{Deadline: time.Minute})
	fx := build(t)
	if err := w.Add(fx.hello, true); err != nil {
		t.Fatal(err)
	}
	p := launch(t, fx.launch, fx.hello)
	p.run(t)
	p.finishWith(t, "hello\n")
	if s := w.Stats(); s.Panics != 1 || s.Handled != 1 {
		t.Errorf("stats = %+v, want 1 panic handled", s)
	}
}

func TestAddErrors(t *testing.T) {
	w := newWatcher(t, func(Event) {}, Options{})
	dir := t.TempDir()
	if err := w.Add(dir, true); err == nil {
		t.Error("Add of a directory succeeded")
	}
	if err := w.Add(filepath.Join(dir, "missing"), true); !errors.Is(err, unix.ENOENT) {
		t.Errorf("Add of a missing file = %v, want ENOENT", err)
	}
	bin := testfix.Copy(t, "/bin/true")
	if err := w.RemoveInode(1, 2); !errors.Is(err, ErrNotMarked) {
		t.Errorf("RemoveInode unmarked = %v, want ErrNotMarked", err)
	}
	// Both kinds on one inode, twice: one mark.
	for range 2 {
		if err := w.Add(bin, true); err != nil {
			t.Fatal(err)
		}
		if err := w.Add(bin, false); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(w.Marks()); n != 1 {
		t.Errorf("%d marks, want 1", n)
	}
	k := statKey(t, bin)
	if err := w.RemoveInode(k.Dev, k.Ino); err != nil {
		t.Fatal(err)
	}
	if n := len(w.Marks()); n != 0 {
		t.Errorf("%d marks after RemoveInode", n)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(des)
}

// After Close, the watcher's goroutines and fds are gone.
func TestNoLeak(t *testing.T) {
	requireAvailable(t)
	fx := build(t)
	lib := fixture(t, "testdata/lib.c", "-O2", "-shared", "-fPIC")
	fds0, gs0 := countFDs(t), runtime.NumGoroutine()

	rec := make(recorder, 16)
	w, err := New(rec.handle, Options{Deadline: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(fx.hello, true); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(lib, false); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		func() {
			p := launch(t, fx.launch, fx.hello)
			defer p.out.Close()
			defer p.in.Close()
			p.run(t)
			p.finishWith(t, "hello\n")
		}()
	}
	if _, err := os.ReadFile(lib); err != nil { // a self event
		t.Fatal(err)
	}
	if s := w.Stats(); s.Handled != 3 || s.Self != 1 || s.Pending != 0 {
		t.Errorf("stats = %+v", s)
	}
	// Our ReadFile returns once the answer is written, maybe just before
	// the event's fd is closed.
	deadline := time.Now().Add(wait)
	for countFDs(t) != fds0+4 { // group, eventfd, 2 marks
		if time.Now().After(deadline) {
			t.Fatalf("%d fds open with 2 marks, want %d", countFDs(t), fds0+4)
		}
		time.Sleep(time.Millisecond)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if fds := countFDs(t); fds != fds0 {
		t.Errorf("%d fds after Close, want %d", fds, fds0)
	}
	deadline = time.Now().Add(wait)
	for runtime.NumGoroutine() > gs0 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, want <= %d:\n%s", runtime.NumGoroutine(), gs0, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
}

// A file marked for both exec and open gives two events at an exec: the
// exec one, then the open one.
func TestExecAndOpenMarks(t *testing.T) {
	rec := make(recorder, 16)
	w := newWatcher(t, rec.handle, Options{Deadline: time.Minute})
	fx := build(t)
	if err := w.Add(fx.hello, true); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(fx.hello, false); err != nil {
		t.Fatal(err)
	}
	p := launch(t, fx.launch, fx.hello)
	p.run(t)
	p.finishWith(t, "hello\n")
	if len(rec) != 2 {
		t.Fatalf("%d events, want 2", len(rec))
	}
	if e1, e2 := <-rec, <-rec; !e1.Exec || e2.Exec || e1.Pid != e2.Pid || e1.Ino != e2.Ino {
		t.Errorf("events %+v, %+v: want exec then open of one file by one pid", e1, e2)
	}
}
