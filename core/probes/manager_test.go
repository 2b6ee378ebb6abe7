package probes

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// The Manager's unit tests use the real Engine over a small fake world: a
// "process" is an rmap.MM over mgrAS, a byte slice holding the file, mapped
// when the Manager watches the file.

const mgrBase = 0x555555554000

// mgrAS is a fake address space: the file's bytes at mgrBase.
type mgrAS struct {
	mu        sync.Mutex
	mem       []byte
	failWrite bool
}

func (a *mgrAS) ReadMemory(vaddr uint64, p []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if vaddr < mgrBase || vaddr-mgrBase+uint64(len(p)) > uint64(len(a.mem)) {
		return syscall.EFAULT
	}
	copy(p, a.mem[vaddr-mgrBase:])
	return nil
}

func (a *mgrAS) WriteMemory(vaddr uint64, p []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failWrite {
		return fmt.Errorf("fake write refused: %w", syscall.EIO)
	}
	if vaddr < mgrBase || vaddr-mgrBase+uint64(len(p)) > uint64(len(a.mem)) {
		return syscall.EFAULT
	}
	copy(a.mem[vaddr-mgrBase:], p)
	return nil
}

func (a *mgrAS) byteAt(off uint64) byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mem[off]
}

// mgrWorld is a fake World: Watch maps the file into one fake process
// (pid 4242) unless noProcess; Unwatch unmaps it.
type mgrWorld struct {
	t         *testing.T
	eng       *Engine
	noProcess bool
	failWatch error

	mu       sync.Mutex
	watches  []string // "watch KEY", "unwatch KEY", in order
	mms      map[rmap.InodeKey]*rmap.MM
	vmas     map[rmap.InodeKey]*rmap.VMA
	as       map[rmap.InodeKey]*mgrAS
	closed   bool
	failNext bool // make the next fake process refuse writes
}

func (w *mgrWorld) Watch(in *rmap.Inode, path string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failWatch != nil {
		return w.failWatch
	}
	w.watches = append(w.watches, "watch "+in.Key.String())
	if w.noProcess {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	as := &mgrAS{mem: b, failWrite: w.failNext}
	mm := rmap.NewMM(4242, as)
	// The executable segment of manager_target: file 0x1000-0x2000.
	v := &rmap.VMA{Start: mgrBase + 0x1000, End: mgrBase + 0x2000, Pgoff: 0x1000, Inode: in, Exec: true}
	mm.MmapSem.Lock()
	mm.InsertVMALocked(v)
	err = w.eng.MmapHook(v)
	mm.MmapSem.Unlock()
	if err != nil {
		return err
	}
	w.mms[in.Key], w.vmas[in.Key], w.as[in.Key] = mm, v, as
	return nil
}

func (w *mgrWorld) Unwatch(in *rmap.Inode) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.watches = append(w.watches, "unwatch "+in.Key.String())
	mm, v := w.mms[in.Key], w.vmas[in.Key]
	if mm == nil {
		return
	}
	mm.MmapSem.Lock()
	mm.RemoveVMALocked(v)
	w.eng.MunmapHook(v)
	mm.MmapSem.Unlock()
	delete(w.mms, in.Key)
	delete(w.vmas, in.Key)
}

func (w *mgrWorld) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return nil
}

func (w *mgrWorld) Skipped(in *rmap.Inode) []Skip {
	return []Skip{{Pid: 77, Reason: "fake: not traceable"}}
}

func (w *mgrWorld) Stats() WorldStats { return WorldStats{Processes: len(w.mms)} }

func (w *mgrWorld) log() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.watches...)
}

// hit simulates a hit of the fake process at file offset off, and reports
// whether there was a uprobe there.
func (w *mgrWorld) hit(key rmap.InodeKey, off uint64) bool {
	w.mu.Lock()
	mm := w.mms[key]
	w.mu.Unlock()
	if mm == nil {
		return false
	}
	vaddr := mgrBase + off
	mm.MmapSem.RLock()
	u := w.eng.LookupLocked(mm, vaddr)
	mm.MmapSem.RUnlock()
	if u == nil {
		return false
	}
	w.eng.Dispatch(u, Hit{Pid: mm.ID, Tid: mm.ID + 1, Vaddr: vaddr, Time: time.Now().UnixNano()})
	return true
}

// mgrTarget builds manager_target once per test.
func mgrTarget(t *testing.T) string {
	return testfix.CC(t, "testdata/manager_target.c", "-O0", "-fcf-protection=none")
}

func newMgr(t *testing.T) (*Manager, *mgrWorld, string, rmap.InodeKey) {
	t.Helper()
	path := mgrTarget(t)
	eng := NewEngine(EngineOptions{})
	w := &mgrWorld{t: t, eng: eng, mms: map[rmap.InodeKey]*rmap.MM{}, vmas: map[rmap.InodeKey]*rmap.VMA{}, as: map[rmap.InodeKey]*mgrAS{}}
	m := NewManager(eng, &rmap.Inodes{}, w, nil)
	t.Cleanup(func() { m.Close() })
	key, err := KeyOf(path)
	if err != nil {
		t.Fatal(err)
	}
	return m, w, path, key
}

func errnoIs(err error, want syscall.Errno) bool {
	var e *Error
	return errors.As(err, &e) && e.Errno == want
}

func names(ps []*Probe) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Name+"@"+p.Location)
	}
	return strings.Join(s, " ")
}

func TestParseProbeLines(t *testing.T) {
	good := []struct {
		in   string
		want []Op
	}{
		{"0x4a0", []Op{{Location: "0x4a0"}}},
		{"1184\n", []Op{{Location: "1184"}}},
		{"  main  \r\n", []Op{{Location: "main"}}},
		{"main+0x10", []Op{{Location: "main+0x10"}}},
		{"x=main+4", []Op{{Name: "x", Location: "main+4"}}},
		{"x = main", []Op{{Name: "x", Location: "main"}}},
		{"p:x main", []Op{{Name: "x", Location: "main"}}},
		{"p:x\tmain", []Op{{Name: "x", Location: "main"}}},
		{"p main", []Op{{Location: "main"}}},
		{"p", []Op{{Location: "p"}}},
		{"-x", []Op{{Remove: true, Name: "x"}}},
		{"-:x", []Op{{Remove: true, Name: "x"}}},
		{"# comment\n\na\n-b\nc=d\n", []Op{{Location: "a"}, {Remove: true, Name: "b"}, {Name: "c", Location: "d"}}},
	}
	for _, tc := range good {
		got, err := ParseProbeLines(tc.in)
		if err != nil {
			t.Errorf("ParseProbeLines(%q): %v", tc.in, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseProbeLines(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	bad := []string{
		"", "\n", "  \n# only a comment\n", "a\x00b", strings.Repeat("a", MaxLine+1),
		"r:x main", "p:x main arg1=%ax", "p:x", "p:a/b main", "x=", "=main", "x=a=b",
		"-", "-:", "-a/b", "main junk", "/bin/bash:0x4a0", "x=-5", "p:x -5", "a\x01b",
		"x/y=main", "probes=main", "..=main", "-probes",
	}
	for _, in := range bad {
		if ops, err := ParseProbeLines(in); !errnoIs(err, syscall.EINVAL) {
			t.Errorf("ParseProbeLines(%q) = %v, %v; want EINVAL", in, ops, err)
		}
	}
}

func FuzzParseProbeLines(f *testing.F) {
	for _, s := range []string{"main", "x=main+4", "p:x 0x10", "-x", "a\nb\n", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ops, err := ParseProbeLines(s)
		if err != nil {
			if !errnoIs(err, syscall.EINVAL) {
				t.Fatalf("error %v is not EINVAL", err)
			}
			return
		}
		for _, op := range ops {
			if op.Remove {
				if checkName(op.Name) != nil {
					t.Fatalf("remove of bad name %q", op.Name)
				}
				continue
			}
			if op.Name != "" && checkName(op.Name) != nil {
				t.Fatalf("bad name %q accepted", op.Name)
			}
			if checkLocation(op.Location) != nil {
				t.Fatalf("bad location %q accepted", op.Location)
			}
		}
	})
}

func TestCanonicalLocation(t *testing.T) {
	for in, want := range map[string]string{
		"0x4A0": "0x4a0", "1184": "0x4a0", "0": "0x0", "main": "main", "main+0": "main",
		"main+16": "main+0x10", "main+0x10": "main+0x10", "a.b@GLIBC": "a.b@GLIBC",
	} {
		if got := canonicalLocation(in); got != want {
			t.Errorf("canonicalLocation(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestManagerRegisterForms(t *testing.T) {
	m, w, path, key := newMgr(t)
	c := Caller{}
	if err := m.Write(c, path, []byte("tick\n")); err != nil {
		t.Fatal(err)
	}
	if err := m.Write(c, path, []byte("0x114a\ntick+1\np:pt tock\nnamed=tock+0x1\n")); err != nil {
		t.Fatal(err)
	}
	if got, want := names(m.Probes(key)), "0x114a@0x114a named@tock+0x1 pt@tock tick@tick tick+0x1@tick+0x1"; got != want {
		t.Fatalf("probes = %q, want %q", got, want)
	}
	if p := m.Probe(key, "tick+0x1"); p == nil || p.Offset != 0x114a {
		t.Fatalf("tick+0x1 = %+v", p)
	}
	// Watch once, before the first register.
	if got := w.log(); len(got) != 1 || !strings.HasPrefix(got[0], "watch ") {
		t.Fatalf("world calls = %v", got)
	}
	as := w.as[key]
	if as.byteAt(0x1149) != 0xcc || as.byteAt(0x114a) != 0xcc {
		t.Fatalf("breakpoints not in the fake process: %#x %#x", as.byteAt(0x1149), as.byteAt(0x114a))
	}
	// Hits count per consumer: 0x114a and tick+0x1 are two consumers of one uprobe.
	for range 3 {
		if !w.hit(key, 0x114a) {
			t.Fatal("no uprobe at 0x114a")
		}
	}
	if a, b := m.Probe(key, "0x114a").Hits(), m.Probe(key, "tick+0x1").Hits(); a != 3 || b != 3 {
		t.Fatalf("hits %d %d, want 3 3", a, b)
	}
	// Removing one consumer keeps the breakpoint; the second removes it.
	if err := m.Write(c, path, []byte("-0x114a\n")); err != nil {
		t.Fatal(err)
	}
	if as.byteAt(0x114a) != 0xcc {
		t.Fatal("breakpoint left with the first of two consumers")
	}
	w.hit(key, 0x114a)
	if got := m.Probe(key, "tick+0x1").Hits(); got != 4 {
		t.Fatalf("hits = %d, want 4", got)
	}
	if err := m.Remove(c, path, "tick+0x1"); err != nil {
		t.Fatal(err)
	}
	if as.byteAt(0x114a) != 0x48 {
		t.Fatalf("byte at 0x114a = %#x after the last consumer left, want 0x48", as.byteAt(0x114a))
	}
	// Status lines.
	st := m.Status(m.Probe(key, "tick"), c)
	if want := fmt.Sprintf("pid=4242 vaddr=%#x installed\npid=77 skipped: fake: not traceable\n", mgrBase+0x1149); st != want {
		t.Fatalf("status = %q, want %q", st, want)
	}
	// Unwatch after the last unregister.
	if err := m.Write(c, path, []byte("-tick\n-:pt\n-named\n")); err != nil {
		t.Fatal(err)
	}
	if got := w.log(); len(got) != 2 || !strings.HasPrefix(got[1], "unwatch ") {
		t.Fatalf("world calls = %v", got)
	}
	if len(m.All()) != 0 {
		t.Fatalf("probes left: %v", names(m.All()))
	}
}

func TestManagerErrors(t *testing.T) {
	m, w, path, key := newMgr(t)
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
		{path, "0x4020", syscall.EINVAL},         // .data
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
	w.hit(key, 0x1149)
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
	w.failWatch = fmt.Errorf("fake: %w", syscall.EPERM)
	if err := m.Write(Root, path, []byte("tick\n")); !errnoIs(err, syscall.EPERM) {
		t.Fatalf("err = %v, want EPERM", err)
	}
	w.failWatch = nil
	if len(m.All()) != 0 || len(w.log()) != 0 {
		t.Fatalf("left: %v %v", names(m.All()), w.log())
	}
	// The engine fails: the process refuses writes. Nothing stays registered.
	w.failNext = true
	if err := m.Write(Root, path, []byte("tick\ntock\n")); !errnoIs(err, syscall.EIO) {
		t.Fatalf("err = %v, want EIO", err)
	}
	if len(m.All()) != 0 || len(m.eng.Uprobes(m.inodes.Get(key))) != 0 {
		t.Fatalf("left after rollback: %v", names(m.All()))
	}
	if got := w.log(); len(got) != 2 || !strings.HasPrefix(got[1], "unwatch") {
		t.Fatalf("world calls = %v", got)
	}
}

func TestManagerReplaceInBatch(t *testing.T) {
	m, w, path, key := newMgr(t)
	if err := m.Write(Root, path, []byte("a=tick\n")); err != nil {
		t.Fatal(err)
	}
	if err := m.Write(Root, path, []byte("-a\na=tock\nb=tick\n-b\n")); err != nil {
		t.Fatal(err)
	}
	if got := names(m.Probes(key)); got != "a@tock" {
		t.Fatalf("probes = %q", got)
	}
	if as := w.as[key]; as.byteAt(0x1149) != 0x55 || as.byteAt(0x1162) != 0xcc {
		t.Fatalf("bytes %#x %#x", as.byteAt(0x1149), as.byteAt(0x1162))
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
	if err := m.Write(Root, path, []byte("roots=tock\n")); err != nil {
		t.Fatal(err)
	}
	if err := m.Write(nobody, path, []byte("-roots\n")); !errnoIs(err, syscall.EPERM) {
		t.Fatalf("removing root's probe: %v, want EPERM", err)
	}
	// A root process maps it now: the user may not add a probe.
	cmd := exec.Command(path, "wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitMapped(t, cmd.Process.Pid, key)
	err := m.Write(nobody, path, []byte("more=tock+1\n"))
	if !errnoIs(err, syscall.EPERM) || !strings.Contains(err.Error(), fmt.Sprint(cmd.Process.Pid)) {
		t.Fatalf("user probing a root process: %v, want EPERM naming pid %d", err, cmd.Process.Pid)
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
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
		if mapsHas(b, key) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d never mapped %v", pid, key)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestManagerEvents(t *testing.T) {
	m, w, path, key := newMgr(t)
	if err := m.Write(Root, path, []byte("tick\n")); err != nil {
		t.Fatal(err)
	}
	p := m.Probe(key, "tick")
	w.hit(key, 0x1149) // before anyone listens: not seen
	s1 := p.Subscribe(Root)
	defer s1.Close()
	buf := make([]byte, 4096)
	if _, err := s1.Read(context.Background(), buf, true); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("empty nonblocking read: %v", err)
	}
	// A blocked reader wakes on a hit.
	got := make(chan string, 1)
	go func() {
		n, err := s1.Read(context.Background(), buf, false)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:n])
	}()
	// Hit until the reader has something (it may not be blocked yet).
	var line string
	deadline := time.After(10 * time.Second)
wait:
	for {
		w.hit(key, 0x1149)
		select {
		case line = <-got:
			break wait
		case <-time.After(time.Millisecond):
		case <-deadline:
			t.Fatal("blocked reader not woken")
		}
	}
	if !strings.Contains(line, " pid=4242 tid=4243 addr=0x555555555149\n") {
		t.Fatalf("event line %q", line)
	}
	// Interrupted read.
	s2 := p.Subscribe(Root)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s2.Read(ctx, buf, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled read: %v", err)
	}
	// Unregistering ends the stream after what is pending.
	w.hit(key, 0x1149)
	if err := m.Write(Root, path, []byte("-tick\n")); err != nil {
		t.Fatal(err)
	}
	n, err := s2.Read(context.Background(), buf, false)
	if err != nil || !strings.Contains(string(buf[:n]), "pid=4242") {
		t.Fatalf("pending after close: %q %v", buf[:n], err)
	}
	if n, err := s2.Read(context.Background(), buf, false); n != 0 || err != nil {
		t.Fatalf("after close: %d %v, want EOF", n, err)
	}
	s2.Close()
}

func TestEventRingDropOldest(t *testing.T) {
	r := newEventRing()
	r.Push(Hit{Pid: 1}) // no subscriber: dropped silently
	s := r.Subscribe(nil)
	defer s.Close()
	slow := r.Subscribe(func(e Event) bool { return e.Pid%2 == 0 })
	defer slow.Close()
	for i := range EventRingSize + 10 {
		r.Push(Hit{Pid: i, Tid: i, Vaddr: uint64(i), Time: int64(i) * 1e9})
	}
	var all strings.Builder
	buf := make([]byte, 1000)
	for {
		n, err := s.Read(context.Background(), buf, true)
		if errors.Is(err, ErrWouldBlock) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		all.Write(buf[:n])
	}
	lines := strings.Split(strings.TrimSuffix(all.String(), "\n"), "\n")
	if lines[0] != "# lost 10 events" || len(lines) != EventRingSize+1 {
		t.Fatalf("first line %q, %d lines", lines[0], len(lines))
	}
	if want := "10.000000000 pid=10 tid=10 addr=0xa"; lines[1] != want {
		t.Fatalf("first event %q, want %q", lines[1], want)
	}
	if s.Lost != 10 || r.Lost() != 20 && r.Lost() != 10 {
		t.Fatalf("lost %d / ring %d", s.Lost, r.Lost())
	}
	n, _ := slow.Read(context.Background(), buf, true)
	if !strings.HasPrefix(string(buf[:n]), "# lost 10 events\n10.000000000 pid=10 ") || strings.Contains(string(buf[:n]), "pid=11 ") {
		t.Fatalf("filtered read %q", buf[:n])
	}
}

func TestManagerClose(t *testing.T) {
	m, w, path, key := newMgr(t)
	if err := m.Write(Root, path, []byte("tick\ntock\n")); err != nil {
		t.Fatal(err)
	}
	as := w.as[key]
	sub := m.Probe(key, "tick").Subscribe(Root)
	defer sub.Close()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if as.byteAt(0x1149) != 0x55 || as.byteAt(0x1162) != 0x55 {
		t.Fatalf("bytes not restored: %#x %#x", as.byteAt(0x1149), as.byteAt(0x1162))
	}
	if !w.closed || len(m.All()) != 0 {
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
