package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/core/sim"
	"github.com/uprobefs/uprobefs/internal/procfs"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// The Manager's unit tests use the real Engine over core/sim's Watcher: a
// Watch maps the target fixture's text into one simulated process, whose
// memory the tests read and whose hits they simulate.

// offsets are the file offsets of the target fixture's functions and data.
type offsets struct{ tick, tock, data uint64 }

func offsetsOf(t *testing.T, path string) offsets {
	return offsets{tick: testfix.SymOff(t, path, "tick"), tock: testfix.SymOff(t, path, "tock"), data: testfix.SymOff(t, path, "data_word")}
}

func hex(off uint64) string { return fmt.Sprintf("%#x", off) }

// mustWrite writes text to path's probes file as Root and fails t at once
// if the write is refused.
func mustWrite(t *testing.T, m *Manager, path, text string) {
	t.Helper()
	if err := m.Write(Root, path, []byte(text)); err != nil {
		t.Fatalf("write %q: %v", text, err)
	}
}

// newMgr is newMgrOn for a private copy of the target fixture.
func newMgr(t *testing.T) (*Manager, *sim.Watcher, string, rmap.InodeKey) {
	t.Helper()
	path := testfix.Target(t)
	m, w, key := newMgrOn(t, path, nil, nil)
	return m, w, path, key
}

// newMgrOn is a Manager, closed at the end of the test, over a new engine
// and a simulated world (sim), for the file at path (a private copy),
// logging to log (nil: nowhere). wrap, when set, makes of the sim watcher
// the world given to the Manager (one with more abilities).
func newMgrOn(t *testing.T, path string, log *slog.Logger, wrap func(*sim.Watcher) World) (*Manager, *sim.Watcher, rmap.InodeKey) {
	t.Helper()
	eng := probes.NewEngine(probes.EngineOptions{})
	inodes := &rmap.Inodes{}
	w := sim.NewWatcher(eng, inodes)
	var world World = w
	if wrap != nil {
		world = wrap(w)
	}
	m := NewManager(eng, inodes, world, log)
	t.Cleanup(func() { m.Close() })
	key, err := KeyOf(path)
	if err != nil {
		t.Fatal(err)
	}
	return m, w, key
}

// byteAt returns the byte at file offset off in the process of key's Watch.
func byteAt(t *testing.T, w *sim.Watcher, key rmap.InodeKey, off uint64) byte {
	t.Helper()
	p := w.Proc(key)
	if p == nil {
		t.Fatalf("no process maps %v", key)
	}
	b, err := p.ByteAt(off)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fileByte returns the byte at off of the file at path.
func fileByte(t *testing.T, path string, off uint64) byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b[off]
}

func errnoIs(err error, want syscall.Errno) bool {
	var e *Error
	return errors.As(err, &e) && e.Errno == want
}

// wantParseRefusals checks that ParseProbeLines refuses each input of
// cases with EINVAL and a reason that contains the case's text.
func wantParseRefusals(t *testing.T, cases map[string]string) {
	t.Helper()
	for in, reason := range cases {
		_, err := ParseProbeLines(in)
		if !errnoIs(err, syscall.EINVAL) || !strings.Contains(err.Error(), reason) {
			t.Errorf("ParseProbeLines(%q) = %v, want EINVAL with %q", in, err, reason)
		}
	}
}

func names(ps []*Probe) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Name+"@"+p.Location)
	}
	return strings.Join(s, " ")
}

func TestManagerRegisterForms(t *testing.T) {
	m, w, path, key := newMgr(t)
	o := offsetsOf(t, path)
	t1 := hex(o.tick + 1)
	c := Caller{}
	if err := m.Write(c, path, []byte("tick\n")); err != nil {
		t.Fatal(err)
	}
	if err := m.Write(c, path, []byte(t1+"\ntick+1\np:pt tock\nnamed=tock+0x1\n")); err != nil {
		t.Fatal(err)
	}
	if got, want := names(m.Probes(key)), t1+"@"+t1+" named@tock+0x1 pt@tock tick@tick tick+0x1@tick+0x1"; got != want {
		t.Fatalf("probes = %q, want %q", got, want)
	}
	if p := m.Probe(key, "tick+0x1"); p == nil || p.Offset != o.tick+1 {
		t.Fatalf("tick+0x1 = %+v", p)
	}
	// Watch once, before the first register.
	if got := w.Calls(); len(got) != 1 || !strings.HasPrefix(got[0], "watch ") {
		t.Fatalf("world calls = %v", got)
	}
	if a, b := byteAt(t, w, key, o.tick), byteAt(t, w, key, o.tick+1); a != 0xcc || b != 0xcc {
		t.Fatalf("breakpoints not in the simulated process: %#x %#x", a, b)
	}
	// Hits count per consumer: 0xTICK+1 and tick+0x1 are two consumers of one uprobe.
	for range 3 {
		if !w.Hit(key, o.tick+1) {
			t.Fatal("no uprobe at tick+1")
		}
	}
	if a, b := m.Probe(key, t1).Hits(), m.Probe(key, "tick+0x1").Hits(); a != 3 || b != 3 {
		t.Fatalf("hits %d %d, want 3 3", a, b)
	}
	// Removing one consumer keeps the breakpoint; the second removes it.
	if err := m.Write(c, path, []byte("-"+t1+"\n")); err != nil {
		t.Fatal(err)
	}
	if byteAt(t, w, key, o.tick+1) != 0xcc {
		t.Fatal("breakpoint left with the first of two consumers")
	}
	w.Hit(key, o.tick+1)
	if got := m.Probe(key, "tick+0x1").Hits(); got != 4 {
		t.Fatalf("hits = %d, want 4", got)
	}
	if err := m.Remove(c, path, "tick+0x1"); err != nil {
		t.Fatal(err)
	}
	if got, want := byteAt(t, w, key, o.tick+1), fileByte(t, path, o.tick+1); got != want {
		t.Fatalf("byte at tick+1 = %#x after the last consumer left, want %#x", got, want)
	}
	// Status lines.
	w.Set(func(w *sim.Watcher) {
		w.Skips = append(w.Skips, Skip{Pid: 77, Reason: "simulated: not traceable"})
	})
	st := m.Status(m.Probe(key, "tick"), c)
	if want := fmt.Sprintf("pid=%d vaddr=%#x installed\npid=77 skipped: simulated: not traceable\n", w.Proc(key).MM.ID, sim.Base+o.tick); st != want {
		t.Fatalf("status = %q, want %q", st, want)
	}
	// Unwatch after the last unregister.
	if err := m.Write(c, path, []byte("-tick\n-:pt\n-named\n")); err != nil {
		t.Fatal(err)
	}
	if got := w.Calls(); len(got) != 2 || !strings.HasPrefix(got[1], "unwatch ") {
		t.Fatalf("world calls = %v", got)
	}
	if len(m.All()) != 0 {
		t.Fatalf("probes left: %v", names(m.All()))
	}
}

func TestManagerErrors(t *testing.T) {
	m, w, path, key := newMgr(t)
	o := offsetsOf(t, path)
	c := Caller{}
	if err := m.Write(c, path, []byte("tick\n")); err != nil {
		t.Fatal(err)
	}
	notELF := t.TempDir() + "/text"
	os.WriteFile(notELF, []byte("hello\n"), 0o755)
	for _, tc := range []struct {
		path, in string
		want     syscall.Errno
	}{
		{path, "garbage!", syscall.ENOENT}, // a symbol name that does not exist
		{path, "0xzz", syscall.EINVAL},
		{path, "99999999999999999999999", syscall.EINVAL},
		{path, "0x10000000", syscall.EINVAL},     // past EOF
		{path, hex(o.data), syscall.EINVAL},      // .data
		{path, "tick+2", syscall.EINVAL},         // mid-instruction
		{path, "tick+0x1000", syscall.EINVAL},    // past the symbol
		{path, "nosuchsym", syscall.ENOENT},      // unknown symbol
		{path, "tick", syscall.EEXIST},           // duplicate name
		{path, "x=tock\nx=tick", syscall.EEXIST}, // duplicate in a batch
		{path, "-nosuch", syscall.ENOENT},
		{path, "\n", syscall.EINVAL},
		{notELF, "main", syscall.ENOEXEC},
		{t.TempDir(), "main", syscall.EISDIR},
		{path + ".missing", "main", syscall.ENOENT},
		{path, "tock\nbad line here\n", syscall.EINVAL},
		{path, "tock\ntick+2\n", syscall.EINVAL},
		{path, string(make([]byte, MaxWrite+1)), syscall.EINVAL},
	} {
		err := m.Write(c, tc.path, []byte(tc.in))
		if !errnoIs(err, tc.want) {
			t.Errorf("Write(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
	// Nothing changed: one probe, still counting.
	if got := names(m.Probes(key)); got != "tick@tick" {
		t.Fatalf("probes = %q", got)
	}
	w.Hit(key, o.tick)
	if got := m.Probe(key, "tick").Hits(); got != 1 {
		t.Fatalf("hits = %d", got)
	}
	// Every refusal is in the error log with a reason.
	errs := m.Errors()
	if len(errs) != 18 {
		t.Fatalf("%d error log entries, want 18", len(errs))
	}
	for _, e := range errs {
		l := e.Line()
		if e.Reason == "" || !strings.Contains(l, "path=") || !strings.Contains(l, "reason: ") || strings.Count(l, "\n") != 1 {
			t.Errorf("bad error log line %q", l)
		}
	}
	if s := m.Stats(); s.Errors != 18 || s.Probes != 1 || s.Files != 1 || s.World == nil {
		t.Fatalf("stats = %+v", s)
	}
}

func TestManagerRollback(t *testing.T) {
	m, w, path, key := newMgr(t)
	// The world fails: nothing registered, nothing watched.
	w.Set(func(w *sim.Watcher) { w.FailWatch = fmt.Errorf("simulated: %w", syscall.EPERM) })
	if err := m.Write(Root, path, []byte("tick\n")); !errnoIs(err, syscall.EPERM) {
		t.Fatalf("err = %v, want EPERM", err)
	}
	w.Set(func(w *sim.Watcher) { w.FailWatch = nil })
	if len(m.All()) != 0 || len(w.Calls()) != 0 {
		t.Fatalf("left: %v %v", names(m.All()), w.Calls())
	}
	// The engine fails: the process refuses writes. Nothing stays registered.
	w.Set(func(w *sim.Watcher) { w.FailWrites = true })
	if err := m.Write(Root, path, []byte("tick\ntock\n")); !errnoIs(err, syscall.EIO) {
		t.Fatalf("err = %v, want EIO", err)
	}
	if len(m.All()) != 0 || len(m.eng.Uprobes(m.inodes.Get(key))) != 0 {
		t.Fatalf("left after rollback: %v", names(m.All()))
	}
	if got := w.Calls(); len(got) != 2 || !strings.HasPrefix(got[1], "unwatch") {
		t.Fatalf("world calls = %v", got)
	}
}

func TestManagerReplaceInBatch(t *testing.T) {
	m, w, path, key := newMgr(t)
	mustWrite(t, m, path, "a=tick\n")
	mustWrite(t, m, path, "-a\na=tock\nb=tick\n-b\n")
	if got := names(m.Probes(key)); got != "a@tock" {
		t.Fatalf("probes = %q", got)
	}
	o := offsetsOf(t, path)
	if a, b := byteAt(t, w, key, o.tick), byteAt(t, w, key, o.tock); a != fileByte(t, path, o.tick) || b != 0xcc {
		t.Fatalf("bytes %#x %#x", a, b)
	}
}

func TestManagerPermissions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a process as another uid")
	}
	m, _, path, key := newMgr(t)
	nobody := Caller{Uid: 65534}
	// No process maps it: a user may probe it.
	if err := m.Write(nobody, path, []byte("mine=tick\n")); err != nil {
		t.Fatal(err)
	}
	// Root's probe cannot be removed by a user.
	mustWrite(t, m, path, "roots=tock\n")
	if err := m.Write(nobody, path, []byte("-roots\n")); !errnoIs(err, syscall.EPERM) {
		t.Fatalf("removing root's probe: %v, want EPERM", err)
	}
	// A root process maps it now: the user may still add a probe, which
	// never reaches that process (reach.go; test/integration shows it).
	cmd := exec.Command(path, "wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitMapped(t, cmd.Process.Pid, key)
	if err := m.Write(nobody, path, []byte("more=tock+1\n")); err != nil {
		t.Fatalf("user probing a file a root process maps: %v", err)
	}
	if err := m.Write(nobody, path, []byte("-more\n")); err != nil {
		t.Fatal(err)
	}
	// A file the user cannot read: EACCES, whatever maps it.
	syscall.Chmod(path, 0o711)
	if err := m.Write(nobody, path, []byte("x=tock+1\n")); !errnoIs(err, syscall.EACCES) || !strings.Contains(err.Error(), "may not read") {
		t.Fatalf("unreadable file: %v, want EACCES", err)
	}
	syscall.Chmod(path, 0o755)
	// Yama forbidding users to ptrace: refused.
	ptraceScope = func() int { return 1 }
	err := m.Write(nobody, path, []byte("x=tock+1\n"))
	ptraceScope = readPtraceScope
	if !errnoIs(err, syscall.EPERM) || !strings.Contains(err.Error(), "ptrace_scope is 1") {
		t.Fatalf("ptrace_scope 1: %v, want EPERM", err)
	}
	// The process itself may not write probes of its own binary.
	err = m.Write(Caller{Pid: cmd.Process.Pid}, path, []byte("x=tock+1\n"))
	if !errnoIs(err, syscall.EDEADLK) {
		t.Fatalf("self-probing writer: %v, want EDEADLK", err)
	}
	if got := names(m.Probes(key)); got != "mine@tick roots@tock" {
		t.Fatalf("probes = %q", got)
	}
	// Set-uid files are root's.
	syscall.Chmod(path, 0o4755)
	cmd.Process.Kill()
	cmd.Wait()
	if err := m.Write(nobody, path, []byte("x=tock+1\n")); !errnoIs(err, syscall.EPERM) {
		t.Fatalf("set-uid: %v, want EPERM", err)
	}
}

func waitMapped(t *testing.T, pid int, key rmap.InodeKey) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if procfs.PidMaps(pid, procfs.FileID(key)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never mapped %v", pid, key)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestManagerClose(t *testing.T) {
	m, w, path, key := newMgr(t)
	mustWrite(t, m, path, "tick\ntock\n")
	o := offsetsOf(t, path)
	sub := m.Probe(key, "tick").Subscribe(Root)
	defer sub.Close()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if a, b := byteAt(t, w, key, o.tick), byteAt(t, w, key, o.tock); a != fileByte(t, path, o.tick) || b != fileByte(t, path, o.tock) {
		t.Fatalf("bytes not restored: %#x %#x", a, b)
	}
	if !w.Closed() || len(m.All()) != 0 {
		t.Fatal("world not closed or probes left")
	}
	if n, err := sub.Read(context.Background(), make([]byte, 100), false); n != 0 || err != nil {
		t.Fatalf("stream after Close: %d %v", n, err)
	}
	if err := m.Write(Root, path, []byte("tick\n")); !errnoIs(err, syscall.ESHUTDOWN) {
		t.Fatalf("write after Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestManagerConcurrentSameName(t *testing.T) {
	m, _, path, key := newMgr(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.Write(Root, path, []byte("same=tick\n"))
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errnoIs(err, syscall.EEXIST):
			t.Errorf("err = %v", err)
		}
	}
	if ok != 1 || len(m.Probes(key)) != 1 {
		t.Fatalf("%d writers succeeded, %d probes", ok, len(m.Probes(key)))
	}
}

// TestReplacedDuringRegistration: a file renamed over the probed path
// (a package upgrade) while probes are registered: every registration
// succeeds and every probe's offset is the symbol's offset in the very
// inode the probe is keyed to. The path was resolved twice (for the key,
// and again for the analysis): a rename in between analysed the other
// build, whose instruction the write then did not find in the keyed
// inode's memory (or, where the bytes happened to match, gave a probe
// keyed to one inode at the other's offset).
func TestReplacedDuringRegistration(t *testing.T) {
	m, _, _, _ := newMgr(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	// Two builds where tick lies at different offsets.
	if err := os.Link(testfix.Target(t), a); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(testfix.Copy(t, testfix.Build(t, testfix.Source("target.c"), "-O2")), b); err != nil {
		t.Fatal(err)
	}
	want := map[rmap.InodeKey]uint64{}
	for _, p := range []string{a, b} {
		k, err := KeyOf(p)
		if err != nil {
			t.Fatal(err)
		}
		want[k] = testfix.SymOff(t, p, "tick")
	}
	if len(want) != 2 || want[must(KeyOf(a))] == want[must(KeyOf(b))] {
		t.Fatalf("fixture: tick at %v in both builds", want)
	}
	path := filepath.Join(dir, "prog")
	if err := os.Link(a, path); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	swapped := make(chan int)
	go func() {
		n := 0
		defer func() { swapped <- n }()
		tmp := filepath.Join(dir, "tmp")
		for {
			for _, src := range []string{b, a} {
				select {
				case <-stop:
					return
				default:
				}
				os.Remove(tmp)
				if os.Link(src, tmp) != nil || os.Rename(tmp, path) != nil {
					return
				}
				n++
			}
		}
	}()
	regs := 0
	for i := 0; i < 2000; i++ {
		// The path always names one of the builds (rename is atomic):
		// every registration must succeed, on one inode, from its bytes.
		if err := m.Write(Root, path, []byte(fmt.Sprintf("t%d=tick\n", i))); err != nil {
			t.Errorf("registration %d: %v", i, err)
			continue
		}
		regs++
	}
	for _, p := range m.All() {
		if got := want[p.Key]; got != p.Offset {
			t.Errorf("probe %s keyed %v has offset %#x, want %#x (tick in that inode)", p.Name, p.Key, p.Offset, got)
		}
	}
	close(stop)
	t.Logf("%d registrations during %d renames", regs, <-swapped)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
