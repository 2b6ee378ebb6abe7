package fanotify

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// wait bounds every wait of these tests.
const wait = 10 * time.Second

func requireAvailable(tb testing.TB) {
	tb.Helper()
	if err := Available(); err != nil {
		tb.Skipf("fanotify permission events unavailable: %v", err)
	}
}

// gate is a Handler that reports each event on held and then blocks until
// release (or stop) is closed.
type gate struct {
	held    chan Event
	release chan struct{}
	stop    chan struct{} // closed at cleanup: no handler goroutine outlives the test
}

func newGate(t *testing.T) *gate {
	g := &gate{held: make(chan Event, 16), release: make(chan struct{}), stop: make(chan struct{})}
	t.Cleanup(func() { close(g.stop) })
	return g
}

func (g *gate) handle(ev Event) {
	g.held <- ev
	select {
	case <-g.release:
	case <-g.stop:
	}
}

func (g *gate) next(t *testing.T) Event {
	t.Helper()
	select {
	case ev := <-g.held:
		return ev
	case <-time.After(wait):
		t.Fatal("no permission event")
		return Event{}
	}
}

func newWatcher(t *testing.T, h Handler, o Options) *Watcher {
	t.Helper()
	requireAvailable(t)
	w, err := New(h, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return w
}

// proc is a child started through testdata/launch.c: it runs (unheld) until
// run writes its stdin, then execs the program, which may be held.
type proc struct {
	cmd    *exec.Cmd
	out    *os.File      // read end of the child's stdout
	in     *os.File      // write end of the launcher's stdin
	exited chan struct{} // closed when Wait has returned
	err    error         // Wait's result; valid once exited is closed
}

// launch starts launcher for bin args; cleanup kills and reaps the child.
func launch(t *testing.T, launcher, bin string, args ...string) *proc {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	ir, iw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: exec.Command(launcher, append([]string{bin}, args...)...), out: pr, in: iw, exited: make(chan struct{})}
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = ir, pw, os.Stderr
	err = p.cmd.Start()
	pw.Close()
	ir.Close()
	if err != nil {
		pr.Close()
		iw.Close()
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.cmd.Process.Kill() // a held process dies too: the wait is killable
		select {
		case <-p.exited:
		case <-time.After(wait):
			t.Errorf("child %d not reaped", p.cmd.Process.Pid)
		}
		pr.Close()
		iw.Close()
	})
	return p
}

// run makes the launcher exec the program.
func (p *proc) run(t *testing.T) {
	t.Helper()
	if _, err := p.in.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
}

func (p *proc) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// pendingOutput returns what the child has written so far, without waiting.
func (p *proc) pendingOutput(t *testing.T) string {
	t.Helper()
	rc, err := p.out.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	buf := make([]byte, 4096)
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		for { // the pipe is non-blocking: read what is there, never wait
			n, err := unix.Read(int(fd), buf)
			if n > 0 {
				out = append(out, buf[:n]...)
				continue
			}
			if err != nil && err != unix.EAGAIN {
				rerr = err
			}
			return true
		}
	}); err != nil {
		t.Fatal(err)
	}
	if rerr != nil {
		t.Fatal(rerr)
	}
	return string(out)
}

// finish waits for the child to exit and returns the rest of its output.
func (p *proc) finish(t *testing.T) string {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(wait):
		t.Fatal("child still running (held?)")
	}
	if p.err != nil {
		t.Fatalf("child: %v", p.err)
	}
	p.out.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(p.out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// finishWith is finish for a child whose whole output must be want.
func (p *proc) finishWith(t *testing.T, want string) {
	t.Helper()
	if out := p.finish(t); out != want {
		t.Errorf("%s: output %q, want %q", p.cmd.Args[1], out, want)
	}
}

// checkHeld checks that pid is blocked in its exec or open: still running
// launcher's image, blocked, no output, not exited.
func checkHeld(t *testing.T, p *proc, ev Event, image, output string) {
	t.Helper()
	if ev.Pid != p.cmd.Process.Pid {
		t.Errorf("event pid = %d, want %d", ev.Pid, p.cmd.Process.Pid)
	}
	exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(ev.Pid), "exe"))
	if err != nil {
		t.Fatal(err)
	}
	if exe != realPath(t, image) {
		t.Errorf("held pid %d runs %q, want %q", ev.Pid, exe, image)
	}
	if st := procState(t, ev.Pid); st != "D" && st != "S" {
		t.Errorf("held pid %d in state %s, want blocked (D or S)", ev.Pid, st)
	}
	if out := p.pendingOutput(t); out != output {
		t.Errorf("held process wrote %q, want %q", out, output)
	}
	if p.hasExited() {
		t.Error("held process exited")
	}
}

func statKey(t *testing.T, path string) Key {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return Key{Dev: st.Dev, Ino: st.Ino}
}

func realPath(t *testing.T, path string) string {
	t.Helper()
	p, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// procState returns the state letter of /proc/PID/stat.
func procState(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		t.Fatalf("bad stat %q", s)
	}
	return s[i+2 : i+3]
}

// fixtures are the test programs, private to one test.
type fixtures struct{ launch, hello string }

func build(t *testing.T) fixtures {
	return fixtures{
		launch: fixture(t, "testdata/launch.c", "-O2"),
		hello:  fixture(t, "testdata/hello.c", "-O2"),
	}
}

// gatedHello is the start of the exec tests: a watcher whose handler is a
// new gate, with the given deadline, that marks fx.hello for exec.
func gatedHello(t *testing.T, deadline time.Duration) (*gate, *Watcher, fixtures) {
	t.Helper()
	g := newGate(t)
	w := newWatcher(t, g.handle, Options{Deadline: deadline})
	fx := build(t)
	if err := w.Add(fx.hello, true); err != nil {
		t.Fatal(err)
	}
	return g, w, fx
}

func TestMain(m *testing.M) { os.Exit(testfix.Main(m)) }

// fixture returns a private copy (its own inode, in t's temp dir) of the C
// program src compiled with flags; each program is compiled once.
func fixture(t testing.TB, src string, flags ...string) string {
	t.Helper()
	return testfix.Copy(t, testfix.Build(t, src, flags...))
}

// An exec of a marked binary is held until the handler returns; the handler
// sees the process's pid and the file's dev/ino; then the exec completes.
func TestExecHeldUntilHandlerReturns(t *testing.T) {
	g, w, fx := gatedHello(t, time.Minute)
	p := launch(t, fx.launch, fx.hello)
	p.run(t)
	ev := g.next(t)

	// Held: inside execve with the old image, no output, not exited.
	checkHeld(t, p, ev, fx.launch, "")
	if !ev.Exec {
		t.Errorf("Exec = false, want true")
	}
	if k := statKey(t, fx.hello); ev.Dev != k.Dev || ev.Ino != k.Ino {
		t.Errorf("event dev/ino = %d/%d, want %d/%d", ev.Dev, ev.Ino, k.Dev, k.Ino)
	}
	if want := realPath(t, fx.hello); ev.Path != want {
		t.Errorf("Path = %q, want %q", ev.Path, want)
	}
	if s := w.Stats(); s.Pending != 1 || s.Events != 1 {
		t.Errorf("stats while held = %+v, want 1 event pending", s)
	}

	close(g.release)
	p.finishWith(t, "hello\n")
	if s := w.Stats(); s.Handled != 1 || s.Pending != 0 || s.Deadline != 0 || s.Errors != 0 {
		t.Errorf("stats = %+v, want 1 handled", s)
	}
}

// waitStats polls w.Stats until ok (the only observable of a handler's
// return after its event was answered).
func waitStats(t *testing.T, w *Watcher, ok func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		s := w.Stats()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats never reached the expected state: %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
}

// A handler that does not return is cut off by the dead-man's switch; its
// late return answers nothing.
func TestDeadmanSwitch(t *testing.T) {
	const deadline = 300 * time.Millisecond
	g, w, fx := gatedHello(t, deadline)
	p := launch(t, fx.launch, fx.hello)
	t0 := time.Now()
	p.run(t)
	g.next(t)
	out := p.finish(t)
	took := time.Since(t0)
	if out != "hello\n" {
		t.Errorf("output = %q", out)
	}
	if took < deadline || took > deadline+5*time.Second {
		t.Errorf("exec took %v, want about the deadline %v", took, deadline)
	}
	if s := w.Stats(); s.Deadline != 1 || s.Handled != 0 || s.Pending != 0 {
		t.Errorf("stats = %+v, want 1 deadline", s)
	}
	close(g.release)
	s := waitStats(t, w, func(s Stats) bool { return s.Late == 1 })
	if s.Handled != 0 || s.Errors != 0 {
		t.Errorf("stats after the late return = %+v", s)
	}
	t.Logf("exec held %v with deadline %v", took, deadline)
}

// Close answers every pending event; handlers returning afterwards are
// ignored. Two processes are held at once: handlers run concurrently.
func TestCloseReleasesPending(t *testing.T) {
	g, w, fx := gatedHello(t, time.Minute)
	p1 := launch(t, fx.launch, fx.hello)
	p2 := launch(t, fx.launch, fx.hello)
	p1.run(t)
	p2.run(t)
	e1, e2 := g.next(t), g.next(t)
	if e1.Pid == e2.Pid {
		t.Fatalf("same pid %d twice", e1.Pid)
	}
	if s := w.Stats(); s.Pending != 2 {
		t.Fatalf("stats = %+v, want 2 pending", s)
	}
	t0 := time.Now()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*proc{p1, p2} {
		p.finishWith(t, "hello\n")
	}
	t.Logf("released by Close in %v", time.Since(t0))
	if s := w.Stats(); s.Closed != 2 || s.Pending != 0 || s.Handled != 0 {
		t.Errorf("stats = %+v, want 2 closed", s)
	}
	close(g.release)
	waitStats(t, w, func(s Stats) bool { return s.Late == 2 })
	if err := w.Add(fx.hello, true); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close = %v, want ErrClosed", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// recorder is a Handler that records events and returns at once.
type recorder chan Event

func (r recorder) handle(ev Event) {
	select {
	case r <- ev:
	default:
		panic("recorder full")
	}
}

// Files that are not marked (another copy of the same program, or a file
// whose mark was removed) are not held.
func TestUnmarkedNotHeld(t *testing.T) {
	rec := make(recorder, 16)
	w := newWatcher(t, rec.handle, Options{Deadline: time.Minute})
	fx := build(t)
	a := fx.hello
	b := testfix.Copy(t, fx.hello)
	if err := w.Add(a, true); err != nil {
		t.Fatal(err)
	}
	run := func(bin string) {
		t.Helper()
		p := launch(t, fx.launch, bin)
		p.run(t)
		p.finishWith(t, "hello\n")
	}
	run(b)
	if len(rec) != 0 {
		t.Fatalf("unmarked exec reported: %+v", <-rec)
	}
	run(a) // positive control
	k := statKey(t, a)
	if ev := <-rec; ev.Ino != k.Ino {
		t.Errorf("event for ino %d, want %d", ev.Ino, k.Ino)
	}
	if got := w.Marks(); len(got) != 1 || got[0] != k {
		t.Errorf("Marks = %v, want [%v]", got, k)
	}
	if err := w.Remove(a); err != nil {
		t.Fatal(err)
	}
	if err := w.Remove(a); !errors.Is(err, ErrNotMarked) {
		t.Errorf("second Remove = %v, want ErrNotMarked", err)
	}
	run(a)
	if len(rec) != 0 {
		t.Fatalf("exec after Remove reported: %+v", <-rec)
	}
	if s := w.Stats(); s.Events != 1 || s.Handled != 1 {
		t.Errorf("stats = %+v, want 1 event", s)
	}
}

// A shared library marked for open is held when a program dlopens it.
func TestDlopenHeld(t *testing.T) {
	g := newGate(t)
	w := newWatcher(t, g.handle, Options{Deadline: time.Minute})
	lib := fixture(t, "testdata/lib.c", "-O2", "-shared", "-fPIC")
	dl := fixture(t, "testdata/dl.c", "-O2")
	if err := w.Add(lib, false); err != nil {
		t.Fatal(err)
	}
	p := launch(t, fixture(t, "testdata/launch.c", "-O2"), dl, lib)
	p.run(t)
	ev := g.next(t)
	// The exec of dl is not held; dl prints "start" before dlopen and the
	// answer only after it.
	checkHeld(t, p, ev, dl, "start\n")
	if ev.Exec {
		t.Error("Exec = true for an open")
	}
	if k := statKey(t, lib); ev.Dev != k.Dev || ev.Ino != k.Ino {
		t.Errorf("dev/ino = %d/%d, want %d/%d", ev.Dev, ev.Ino, k.Dev, k.Ino)
	}
	close(g.release)
	p.finishWith(t, "answer 42\n")
	if s := w.Stats(); s.Handled != 1 || s.Events != 1 {
		t.Errorf("stats = %+v", s)
	}
}
