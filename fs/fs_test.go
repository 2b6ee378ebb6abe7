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
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/uprobefs/uprobefs/core/manager"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/core/sim"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// The fs unit tests mount a real uprobefs (as root, with DirectMount) that
// mirrors a private temporary directory, over the real Engine and Manager
// and core/sim's Watcher: a watched file is mapped into one simulated
// process, and hits are simulated (sim.Watcher.Hit).

type testFS struct {
	t      *testing.T
	root   string // mirrored directory
	mnt    string // mount point (root/mnt: inside the mirror)
	target string // root/bin/target, the probed file
	key    rmap.InodeKey
	m      *manager.Manager
	w      *sim.Watcher
	// tick and tock are the file offsets of the target's functions; t1 is
	// "0x..." of tick+1 (a location and a probe name).
	tick, tock uint64
	t1         string
}

// hit simulates n hits at file offset off of the file key.
func (f *testFS) hit(off uint64, n int) {
	f.t.Helper()
	for range n {
		if !f.w.Hit(f.key, off) {
			f.t.Fatalf("no uprobe at %#x", off)
		}
	}
}

// byteAt returns the byte at file offset off in the simulated process.
func (f *testFS) byteAt(off uint64) byte {
	f.t.Helper()
	b, err := f.w.Proc(f.key).ByteAt(off)
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

// fileByte returns the target file's byte at off.
func (f *testFS) fileByte(off uint64) byte {
	f.t.Helper()
	b, err := os.ReadFile(f.target)
	if err != nil {
		f.t.Fatal(err)
	}
	return b[off]
}

// pid returns the simulated process's pid.
func (f *testFS) pid() int { return f.w.Proc(f.key).MM.ID }

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
	bin := testfix.Target(t)
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
	key, err := manager.KeyOf(target)
	if err != nil {
		t.Fatal(err)
	}

	eng := probes.NewEngine(probes.EngineOptions{})
	inodes := &rmap.Inodes{}
	w := sim.NewWatcher(eng, inodes)
	m := manager.NewManager(eng, inodes, w, nil)
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
	tick := testfix.SymOff(t, target, "tick")
	return &testFS{t: t, root: root, mnt: mnt, target: target, key: key, m: m, w: w,
		tick: tick, tock: testfix.SymOff(t, target, "tock"), t1: fmt.Sprintf("%#x", tick+1)}
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
	f.sh("echo "+f.t1+" >> abs/probes", true)                       // symlink: same inode
	f.sh("printf 'p:pt tock\\nnamed=tock+1\\n' > rel/probes", true) // one write, two lines
	f.sh("echo 'tick+1' > sbin/target/probes", true)
	want := fmt.Sprintf("%[1]s %[1]s %[1]s 0\nnamed tock+0x1 %#[3]x 0\npt tock %#[2]x 0\ntick tick %#[4]x 0\ntick+0x1 tick+0x1 %[1]s 0\n", f.t1, f.tock, f.tock+1, f.tick)
	if got := f.read("bin/target/probes"); got != want {
		t.Fatalf("probes =\n%s\nwant\n%s", got, want)
	}
	if got := f.sh("ls bin/target", true); got != f.t1+"\nnamed\nprobes\npt\ntick\ntick+0x1\n" {
		t.Fatalf("ls = %q", got)
	}
	if got := f.sh("ls bin/target/tick", true); got != "events\nhits\nstatus\n" {
		t.Fatalf("ls tick = %q", got)
	}
	// Hits: two consumers on one location count separately.
	f.hit(f.tick+1, 5)
	f.hit(f.tick, 2)
	if a, b, c := f.read("bin/target/"+f.t1+"/hits"), f.read("abs/tick+0x1/hits"), f.read("bin/target/tick/hits"); a != "5\n" || b != "5\n" || c != "2\n" {
		t.Fatalf("hits %q %q %q", a, b, c)
	}
	// Status.
	if got, want := f.read("bin/target/tick/status"), fmt.Sprintf("pid=%d vaddr=%#x installed\n", f.pid(), sim.Base+f.tick); got != want {
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
	f.sh("rm -r bin/target/"+f.t1, true)
	if got := f.sh("ls bin/target", true); got != "probes\ntick\ntick+0x1\n" {
		t.Fatalf("ls after removals = %q", got)
	}
	if f.byteAt(f.tick+1) != 0xcc {
		t.Fatal("breakpoint left with its first consumer")
	}
	f.sh("rm -r bin/target/tick+0x1", true)
	if a, b := f.byteAt(f.tick+1), f.byteAt(f.tick); a != f.fileByte(f.tick+1) || b != 0xcc {
		t.Fatalf("bytes %#x %#x", a, b)
	}
	// The control directory lists every probe.
	if got, want := f.read(".uprobefs/probes"), fmt.Sprintf("%s tick tick %#x 2\n", f.target, f.tick); got != want {
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
	f.hit(f.tick, 1)
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
	f.hit(f.tick, 1)
	n, err := syscall.Read(fd, buf)
	if err != nil || !strings.HasSuffix(string(buf[:n]), fmt.Sprintf(" pid=%[1]d tid=%[1]d addr=%#[2]x\n", f.pid(), sim.Base+f.tick)) {
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
			f.hit(f.tick, 1)
		case <-ctx.Done():
			t.Fatal("events did not stream in time")
		}
	}
	if got := strings.Count(out.String(), fmt.Sprintf("pid=%d ", f.pid())); got != K {
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
		f.hit(f.tick, 1)
		select {
		case l := <-lines:
			if !strings.Contains(l, fmt.Sprintf("pid=%d ", f.pid())) {
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
