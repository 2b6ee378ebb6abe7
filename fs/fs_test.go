package fs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// The fs unit tests mount a real uprobefs (as root, with DirectMount) that
// mirrors a private temporary directory, over the real Engine and Manager
// and a fake world (fakeWorld): a "process" is an rmap.MM over a byte slice
// holding the probed file, and hits are simulated with Engine.Dispatch.

const fakeBase = 0x555555554000

type fakeAS struct {
	mu  sync.Mutex
	mem []byte
}

func (a *fakeAS) ReadMemory(vaddr uint64, p []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if vaddr < fakeBase || vaddr-fakeBase+uint64(len(p)) > uint64(len(a.mem)) {
		return syscall.EFAULT
	}
	copy(p, a.mem[vaddr-fakeBase:])
	return nil
}

func (a *fakeAS) WriteMemory(vaddr uint64, p []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if vaddr < fakeBase || vaddr-fakeBase+uint64(len(p)) > uint64(len(a.mem)) {
		return syscall.EFAULT
	}
	copy(a.mem[vaddr-fakeBase:], p)
	return nil
}

func (a *fakeAS) byteAt(off uint64) byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mem[off]
}

// fakeWorld maps every watched file into one fake process (pid 4242), at
// the text segment of testdata/target.c (file 0x1000-0x2000).
type fakeWorld struct {
	eng *probes.Engine
	mu  sync.Mutex
	mms map[rmap.InodeKey]*rmap.MM
	vma map[rmap.InodeKey]*rmap.VMA
	as  map[rmap.InodeKey]*fakeAS
}

func (w *fakeWorld) Watch(in *rmap.Inode, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	as := &fakeAS{mem: b}
	mm := rmap.NewMM(4242, as)
	v := &rmap.VMA{Start: fakeBase + 0x1000, End: fakeBase + 0x2000, Pgoff: 0x1000, Inode: in, Exec: true}
	mm.MmapSem.Lock()
	mm.InsertVMALocked(v)
	err = w.eng.MmapHook(v)
	mm.MmapSem.Unlock()
	w.mms[in.Key], w.vma[in.Key], w.as[in.Key] = mm, v, as
	return err
}

func (w *fakeWorld) Unwatch(in *rmap.Inode) {
	w.mu.Lock()
	defer w.mu.Unlock()
	mm, v := w.mms[in.Key], w.vma[in.Key]
	if mm == nil {
		return
	}
	mm.MmapSem.Lock()
	mm.RemoveVMALocked(v)
	w.eng.MunmapHook(v)
	mm.MmapSem.Unlock()
	delete(w.mms, in.Key)
}

func (w *fakeWorld) Close() error { return nil }

// hit simulates n hits at file offset off of the file key.
func (w *fakeWorld) hit(t *testing.T, key rmap.InodeKey, off uint64, n int) {
	t.Helper()
	w.mu.Lock()
	mm := w.mms[key]
	w.mu.Unlock()
	if mm == nil {
		t.Fatalf("no fake process maps %v", key)
	}
	for range n {
		vaddr := fakeBase + off
		mm.MmapSem.RLock()
		u := w.eng.LookupLocked(mm, vaddr)
		mm.MmapSem.RUnlock()
		if u == nil {
			t.Fatalf("no uprobe at %#x", off)
		}
		w.eng.Dispatch(u, probes.Hit{Pid: 4242, Tid: 4243, Vaddr: vaddr, Time: time.Now().UnixNano()})
	}
}

type testFS struct {
	t      *testing.T
	root   string // mirrored directory
	mnt    string // mount point (root/mnt: inside the mirror)
	target string // root/bin/target, the probed file
	key    rmap.InodeKey
	m      *probes.Manager
	w      *fakeWorld
}

func mountTest(t *testing.T) *testFS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	root := t.TempDir()
	for _, d := range []string{"bin", "mnt", "etc/alt", "sub/dir"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := testfix.CC(t, "testdata/target.c", "-O0", "-fcf-protection=none")
	target := filepath.Join(root, "bin/target")
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(target, b, 0o755)
	os.WriteFile(filepath.Join(root, "notes.txt"), []byte("not an ELF\n"), 0o644)
	os.Symlink("/bin/target", filepath.Join(root, "abs"))               // absolute: within the mirror
	os.Symlink("bin/target", filepath.Join(root, "rel"))                // relative
	os.Symlink("../../../../bin/target", filepath.Join(root, "sub/up")) // climbs above the root
	os.Symlink("/etc/alt/target", filepath.Join(root, "bin/editor"))    // a chain, like alternatives
	os.Symlink("/bin/target", filepath.Join(root, "etc/alt/target"))    //
	os.Symlink("bin", filepath.Join(root, "sbin"))                      // a directory symlink (merged /usr)
	syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644)                  // hidden
	key, err := probes.KeyOf(target)
	if err != nil {
		t.Fatal(err)
	}

	eng := probes.NewEngine(probes.EngineOptions{})
	w := &fakeWorld{eng: eng, mms: map[rmap.InodeKey]*rmap.MM{}, vma: map[rmap.InodeKey]*rmap.VMA{}, as: map[rmap.InodeKey]*fakeAS{}}
	m := probes.NewManager(eng, &rmap.Inodes{}, w, nil)
	mnt := filepath.Join(root, "mnt")
	srv, err := Mount(m, mnt, MountOptions{Options: Options{Root: root}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		done := make(chan struct{})
		go func() {
			if err := srv.Unmount(); err != nil {
				t.Logf("unmount: %v; detaching", err)
				syscall.Unmount(mnt, syscall.MNT_DETACH)
			}
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			syscall.Unmount(mnt, syscall.MNT_DETACH)
			t.Error("unmount hung")
		}
	})
	return &testFS{t: t, root: root, mnt: mnt, target: target, key: key, m: m, w: w}
}

// sh runs a shell command in the mount point and returns its output; it
// fails the test unless the exit status is wantOK.
func (f *testFS) sh(cmd string, wantOK bool) string {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Not c.Dir = f.mnt: os/exec's child would chdir into the mount
	// between vfork and exec, while the parent thread holds its P; a
	// stop-the-world in this process (which serves the mount) then waits
	// for that thread forever and nobody answers the child's FUSE
	// request. The shell changes directory after exec instead.
	c := exec.CommandContext(ctx, "sh", "-c", `cd "$MNT" && `+cmd)
	c.Env = append(os.Environ(), "MNT="+f.mnt)
	out, err := c.CombinedOutput()
	if (err == nil) != wantOK {
		f.t.Fatalf("sh -c %q: %v (want ok=%v)\n%s", cmd, err, wantOK, out)
	}
	return string(out)
}

func (f *testFS) read(p string) string {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.mnt, p))
	if err != nil {
		f.t.Fatal(err)
	}
	return string(b)
}

func TestMirror(t *testing.T) {
	f := mountTest(t)
	ents, err := os.ReadDir(f.mnt)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name()+":"+e.Type().String())
	}
	want := ".uprobefs:d--------- abs:L--------- bin:d--------- etc:d--------- notes.txt:d--------- rel:L--------- sbin:L--------- sub:d---------"
	if strings.Join(got, " ") != want {
		t.Fatalf("ls mount =\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
	// The mount point is not in its own mirror.
	if _, err := os.Stat(filepath.Join(f.mnt, "mnt")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("stat mnt/mnt: %v, want ENOENT", err)
	}
	if _, err := os.Stat(filepath.Join(f.mnt, "fifo")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("stat fifo: %v, want ENOENT", err)
	}
	// Symlinks resolve within the mount.
	for link, want := range map[string]string{
		"abs": f.mnt + "/bin/target", "rel": "bin/target", "sub/up": f.mnt + "/bin/target",
		"bin/editor": f.mnt + "/etc/alt/target", "sbin": "bin",
	} {
		if got, err := os.Readlink(filepath.Join(f.mnt, link)); err != nil || got != want {
			t.Errorf("readlink %s = %q, %v; want %q", link, got, err, want)
		}
	}
	// A regular file is a directory of its probes, by every path.
	for _, p := range []string{"bin/target", "abs", "rel", "sub/up", "bin/editor", "sbin/target"} {
		st, err := os.Stat(filepath.Join(f.mnt, p, "probes"))
		if err != nil || !st.Mode().IsRegular() {
			t.Errorf("stat %s/probes: %v %v", p, st, err)
		}
	}
	if out := f.sh("ls notes.txt", true); out != "probes\n" {
		t.Fatalf("ls notes.txt = %q", out)
	}
	// find never descends into the mount itself.
	out := f.sh("find . -maxdepth 3 | sort | head -50", true)
	if strings.Contains(out, "./mnt") {
		t.Fatalf("find shows the mount point:\n%s", out)
	}
}

func TestProbesFile(t *testing.T) {
	f := mountTest(t)
	f.sh("echo tick > bin/target/probes", true)
	f.sh("echo 0x114a >> abs/probes", true)                         // symlink: same inode
	f.sh("printf 'p:pt tock\\nnamed=tock+1\\n' > rel/probes", true) // one write, two lines
	f.sh("echo 'tick+1' > sbin/target/probes", true)
	want := "0x114a 0x114a 0x114a 0\nnamed tock+0x1 0x1163 0\npt tock 0x1162 0\ntick tick 0x1149 0\ntick+0x1 tick+0x1 0x114a 0\n"
	if got := f.read("bin/target/probes"); got != want {
		t.Fatalf("probes =\n%s\nwant\n%s", got, want)
	}
	if got := f.sh("ls bin/target", true); got != "0x114a\nnamed\nprobes\npt\ntick\ntick+0x1\n" {
		t.Fatalf("ls = %q", got)
	}
	if got := f.sh("ls bin/target/tick", true); got != "events\nhits\nstatus\n" {
		t.Fatalf("ls tick = %q", got)
	}
	// Hits: two consumers on one location count separately.
	f.w.hit(t, f.key, 0x114a, 5)
	f.w.hit(t, f.key, 0x1149, 2)
	if a, b, c := f.read("bin/target/0x114a/hits"), f.read("abs/tick+0x1/hits"), f.read("bin/target/tick/hits"); a != "5\n" || b != "5\n" || c != "2\n" {
		t.Fatalf("hits %q %q %q", a, b, c)
	}
	// Status.
	if got, want := f.read("bin/target/tick/status"), fmt.Sprintf("pid=4242 vaddr=%#x installed\n", fakeBase+0x1149); got != want {
		t.Fatalf("status %q, want %q", got, want)
	}
	// ">" never deletes; a bare truncation neither.
	f.sh(": > bin/target/probes", true)
	f.sh("echo tock > bin/target/probes", true)
	if got := f.sh("ls bin/target | wc -l", true); strings.TrimSpace(got) != "7" {
		t.Fatalf("%s entries after > (want 7)", got)
	}
	// A bad line: nothing of the write registers.
	f.sh("printf 'x1=tick\\ntick+2\\nx2=tock\\n' > bin/target/probes", false)
	if _, err := os.Stat(filepath.Join(f.mnt, "bin/target/x1")); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("x1 after a failed batch: %v", err)
	}
	// Unregister: -NAME, rmdir, rm -r.
	f.sh("echo -tock > bin/target/probes", true)
	f.sh("echo -:pt > bin/target/probes", true)
	f.sh("rmdir bin/target/named", true)
	f.sh("rm -r bin/target/0x114a", true)
	if got := f.sh("ls bin/target", true); got != "probes\ntick\ntick+0x1\n" {
		t.Fatalf("ls after removals = %q", got)
	}
	if as := f.w.as[f.key]; as.byteAt(0x114a) != 0xcc {
		t.Fatal("breakpoint left with its first consumer")
	}
	f.sh("rm -r bin/target/tick+0x1", true)
	if as := f.w.as[f.key]; as.byteAt(0x114a) != 0x48 || as.byteAt(0x1149) != 0xcc {
		t.Fatalf("bytes %#x %#x", as.byteAt(0x114a), as.byteAt(0x1149))
	}
	// The control directory lists every probe.
	if got, want := f.read(".uprobefs/probes"), f.target+" tick tick 0x1149 2\n"; got != want {
		t.Fatalf("control probes %q, want %q", got, want)
	}
	if got := f.read(".uprobefs/stats"); !strings.Contains(got, "probes 1\n") || !strings.Contains(got, "hits 2\n") {
		t.Fatalf("stats %q", got)
	}
	// A re-registered name is a new probe with fresh counts.
	f.sh("rmdir bin/target/tick && echo tick > bin/target/probes", true)
	if got := f.read("bin/target/tick/hits"); got != "0\n" {
		t.Fatalf("hits of a re-registered probe = %q", got)
	}
}

func TestRefusals(t *testing.T) {
	f := mountTest(t)
	f.sh("echo tick > bin/target/probes", true)
	type tc struct {
		cmd    string
		errno  syscall.Errno
		errMsg string // in the shell's output
	}
	cases := []tc{
		{"echo garbage! > bin/target/probes", syscall.ENOENT, ""},
		{"echo tick+2 > bin/target/probes", syscall.EINVAL, ""},
		{"echo tick > bin/target/probes", syscall.EEXIST, ""},
		{"echo main > notes.txt/probes", syscall.ENOEXEC, ""},
		{"echo main > etc/probes", syscall.EISDIR, ""},
		{"echo -nosuch > bin/target/probes", syscall.ENOENT, ""},
		{"echo > bin/target/probes", syscall.EINVAL, ""},
		{"echo 1 > bin/target/tick/hits", syscall.EACCES, ""},
		{"echo 1 > .uprobefs/stats", syscall.EACCES, ""},
		{"mkdir bin/target/new", syscall.EPERM, ""},
		{"mkdir etc/new", syscall.EPERM, ""},
		{"touch bin/target/new", syscall.EPERM, ""},
		{"touch etc/new", syscall.EPERM, ""},
		{"mv bin/target/tick bin/target/tock", syscall.EPERM, ""},
		{"rm bin/target/probes", syscall.EPERM, ""},
		{"rm notes.txt/probes", syscall.EPERM, ""},
		{"rmdir etc/alt", syscall.EPERM, ""},
		{"mv notes.txt etc/", syscall.EPERM, ""},
		{"ln -s x etc/y", syscall.EPERM, ""},
	}
	for _, c := range cases {
		before := len(f.m.Errors())
		f.sh(c.cmd, false)
		errs := f.m.Errors()
		if len(errs) != before+1 {
			t.Errorf("%s: %d new error log lines, want 1", c.cmd, len(errs)-before)
			continue
		}
		if e := errs[len(errs)-1]; e.Errno != c.errno || e.Reason == "" {
			t.Errorf("%s: logged %s, want %v", c.cmd, e.Line(), c.errno)
		}
	}
	if got := f.read(".uprobefs/errors"); strings.Count(got, "\n") != len(cases) {
		t.Fatalf("errors file has %d lines, want %d:\n%s", strings.Count(got, "\n"), len(cases), got)
	}
	f.w.hit(t, f.key, 0x1149, 1)
	if got := f.read("bin/target/tick/hits"); got != "1\n" {
		t.Fatalf("hits after the refusals = %q", got)
	}
}

func TestEventsFile(t *testing.T) {
	f := mountTest(t)
	f.sh("echo tick > bin/target/probes", true)
	ev := filepath.Join(f.mnt, "bin/target/tick/events")
	// O_NONBLOCK on an empty stream: EAGAIN.
	fd, err := syscall.Open(ev, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if _, err := syscall.Read(fd, buf); err != syscall.EAGAIN {
		t.Fatalf("nonblocking read: %v, want EAGAIN", err)
	}
	f.w.hit(t, f.key, 0x1149, 1)
	n, err := syscall.Read(fd, buf)
	if err != nil || !strings.HasSuffix(string(buf[:n]), " pid=4242 tid=4243 addr=0x555555555149\n") {
		t.Fatalf("nonblocking read after a hit: %q %v", buf[:n], err)
	}
	syscall.Close(fd)

	// cat streams: K lines while hits happen.
	const K = 20
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cat := exec.CommandContext(ctx, "head", "-n", fmt.Sprint(K), ev)
	var out bytes.Buffer
	cat.Stdout = &out
	if err := cat.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cat.Wait() }()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("head: %v", err)
			}
			break loop
		case <-tick.C:
			f.w.hit(t, f.key, 0x1149, 1)
		case <-ctx.Done():
			t.Fatal("events did not stream in time")
		}
	}
	if got := strings.Count(out.String(), "pid=4242"); got != K {
		t.Fatalf("%d event lines, want %d:\n%s", got, K, out.String())
	}

	// A blocked reader is interrupted by a signal and ends at unregister.
	cat2 := exec.Command("cat", ev)
	if err := cat2.Start(); err != nil {
		t.Fatal(err)
	}
	done2 := make(chan error, 1)
	go func() { done2 <- cat2.Wait() }()
	time.Sleep(50 * time.Millisecond) // let it block (either way it must end)
	cat2.Process.Signal(syscall.SIGTERM)
	select {
	case <-done2:
	case <-time.After(10 * time.Second):
		cat2.Process.Kill()
		t.Fatal("blocked cat not interrupted by SIGTERM")
	}
	cat3 := exec.Command("cat", ev)
	r, err := cat3.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cat3.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			if n > 0 {
				lines <- string(b[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	// Hit until cat has read an event, then unregister: cat ends.
	deadline := time.After(10 * time.Second)
wait:
	for {
		f.w.hit(t, f.key, 0x1149, 1)
		select {
		case l := <-lines:
			if !strings.Contains(l, "pid=4242") {
				t.Fatalf("cat read %q", l)
			}
			break wait
		case <-time.After(2 * time.Millisecond):
		case <-deadline:
			t.Fatal("cat read nothing")
		}
	}
	f.sh("rmdir bin/target/tick", true)
	eof := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-lines:
			if ok {
				continue
			}
			if err := cat3.Wait(); err != nil {
				t.Fatalf("cat after unregister: %v", err)
			}
			return
		case <-eof:
			cat3.Process.Kill()
			cat3.Wait()
			t.Fatal("cat did not end at unregister")
		}
	}
}

// Fuse caller identity reaches the Manager.
func TestCallerOf(t *testing.T) {
	ctx := &fuse.Context{Caller: fuse.Caller{Owner: fuse.Owner{Uid: 1000}, Pid: 12}}
	if c := callerOf(ctx); c.Uid != 1000 || c.Pid != 12 {
		t.Fatalf("callerOf = %+v", c)
	}
	if c := callerOf(context.Background()); c.Uid != 65534 {
		t.Fatalf("callerOf(background) = %+v", c)
	}
}
