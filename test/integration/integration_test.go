package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestRegisterListHits registers by offset, symbol, symbol+offset and
// p:NAME, lists, and watches hits rise while the fixture runs; two
// consumers on one location count separately and the breakpoint leaves
// only with the second.
func TestRegisterListHits(t *testing.T) {
	d, P, fx := startFixtureRig(t, buildFixture(t))
	tick, tock := testfix.SymOff(t, fx.path, "tick"), testfix.SymOff(t, fx.path, "tock")

	d.must(fmt.Sprintf("echo %#x > %s/probes", tick, P))      // offset
	d.must(fmt.Sprintf("echo tock > %s/probes", P))           // symbol
	d.must(fmt.Sprintf("echo tick+1 >> %s/probes", P))        // symbol+offset
	d.must(fmt.Sprintf("echo 'p:ptock tock' > %s/probes", P)) // tracefs style; a 2nd consumer of tock
	d.must(fmt.Sprintf("echo %d > %s/probes", tick+1, P))     // decimal; a 2nd consumer of tick+1

	if got, want := d.must("ls "+P), fmt.Sprintf("%#x\n%#x\nprobes\nptock\ntick+0x1\ntock\n", tick, tick+1); got != want {
		t.Fatalf("ls = %q, want %q", got, want)
	}
	list := d.must("cat " + P + "/probes")
	for _, want := range []string{
		fmt.Sprintf("%#x %#x %#x ", tick, tick, tick), fmt.Sprintf("tock tock %#x ", tock),
		fmt.Sprintf("tick+0x1 tick+0x1 %#x ", tick+1), fmt.Sprintf("ptock tock %#x ", tock),
	} {
		if !strings.Contains(list, want) {
			t.Errorf("probes listing lacks %q:\n%s", want, list)
		}
	}
	if got := d.must("cat $M/.uprobefs/probes | wc -l"); strings.TrimSpace(got) != "5" {
		t.Fatalf("control probes: %s lines", got)
	}

	// Hits rise while the fixture runs.
	h1 := d.waitHitsAbove(P+"/tock", 0)
	d.waitHitsAbove(P+"/tock", h1)
	d.waitHitsAbove(P+"/tick+0x1", 0)
	d.waitHitsAbove(P+fmt.Sprintf("/%#x", tick), 0)
	if st := d.must("cat " + P + "/tock/status"); !strings.Contains(st, fmt.Sprintf("pid=%d ", fx.pid())) || !isInstalled(strings.TrimSuffix(st, "\n")) {
		t.Fatalf("status = %q", st)
	}

	// Two consumers of tock count separately: ptock registered later, so
	// it has fewer hits... but both rise.
	p1, t1 := d.hits(P+"/ptock"), d.hits(P+"/tock")
	d.waitHitsAbove(P+"/ptock", p1)
	d.waitHitsAbove(P+"/tock", t1)
	// The breakpoint leaves only with the second consumer.
	d.must("rmdir " + P + "/tock")
	if b := fx.text(tock, 1)[0]; b != 0xcc && b != 0xe9 {
		t.Fatalf("tock byte %#x after removing one of two consumers, want the breakpoint or the jump site", b)
	}
	p2 := d.hits(P + "/ptock")
	d.waitHitsAbove(P+"/ptock", p2)
	d.must("rm -r " + P + "/ptock")
	fx.checkOriginal(tock)
	if _, err := os.Stat(P + "/tock"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("tock after rmdir: %v", err)
	}

	// Everything removed: the process is detached, its text original.
	d.must(fmt.Sprintf("echo -%#x > %s/probes", tick, P))
	d.must(fmt.Sprintf("echo -:tick+0x1 > %s/probes", P))
	d.must(fmt.Sprintf("rmdir %s/%#x", P, tick+1))
	if got := d.must("ls " + P); got != "probes\n" {
		t.Fatalf("ls after removing all = %q", got)
	}
	fx.waitUntraced()
	fx.checkOriginal(tick)
	fx.drainBeats()
	fx.waitBeats(3)
}

// TestTruncateAndBatches: ">" never deletes, and a write with one bad line
// registers nothing.
func TestTruncateAndBatches(t *testing.T) {
	d, P, _ := startFixtureRig(t, buildFixture(t))
	d.must("echo a=tick > " + P + "/probes")
	d.must(": > " + P + "/probes")
	d.must("echo b=tock > " + P + "/probes")
	if got := d.must("ls " + P); got != "a\nb\nprobes\n" {
		t.Fatalf("ls = %q", got)
	}
	r := d.sh(fmt.Sprintf("env printf 'c=tick\\nd=tick+2\\ne=tock\\n' > %s/probes", P))
	if r.code == 0 || !strings.Contains(strings.ToLower(r.out), "invalid argument") {
		t.Fatalf("bad batch: exit %d %q", r.code, r.out)
	}
	if got := d.must("ls " + P); got != "a\nb\nprobes\n" {
		t.Fatalf("ls after a bad batch = %q", got)
	}
	if last := lastLine(d.must("cat $M/.uprobefs/errors")); !strings.Contains(last, "EINVAL") || !strings.Contains(last, `input="c=tick\nd=tick+2\ne=tock\n"`) {
		t.Fatalf("error log: %q", last)
	}
	// A good batch registers all.
	d.must(fmt.Sprintf("printf 'c=tick\\n# comment\\n\\ne=tock\\n' > %s/probes", P))
	if got := d.must("ls " + P); got != "a\nb\nc\ne\nprobes\n" {
		t.Fatalf("ls = %q", got)
	}
	d.waitHitsAbove(P+"/e", 0)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// armELF writes a minimal AArch64 ELF header.
func armELF(t *testing.T, path string) {
	b := make([]byte, 64)
	copy(b, "\x7fELF\x02\x01\x01")
	b[16] = 2   // ET_EXEC
	b[18] = 183 // EM_AARCH64
	b[20] = 1
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestBadInputs: each bad input gets its documented errno and a readable
// line in the error log, and the existing probes keep counting.
func TestBadInputs(t *testing.T) {
	d, P, fx := startFixtureRig(t, buildFixture(t))
	dir := t.TempDir()
	os.WriteFile(dir+"/text", []byte("#!/bin/sh\necho not an ELF\n"), 0o755)
	armELF(t, dir+"/arm")
	os.Mkdir(dir+"/sub", 0o755)
	D := d.in(dir)
	d.must("echo tick > " + P + "/probes")
	data := testfix.SymOff(t, fx.path, "data_word")

	cases := []struct {
		name, cmd string
		errno     syscall.Errno
	}{
		{"garbage", "env echo 'hello world' > $P/probes", syscall.EINVAL},
		{"garbage symbol", "env echo 'foo%bar' > $P/probes", syscall.ENOENT},
		{"negative", "env echo 'x=-1' > $P/probes", syscall.EINVAL},
		{"negative p", "env echo 'p:x -0x10' > $P/probes", syscall.EINVAL},
		{"overflow hex", "env echo 0x1ffffffffffffffff > $P/probes", syscall.EINVAL},
		{"overflow dec", "env echo 99999999999999999999999 > $P/probes", syscall.EINVAL},
		{"past EOF", "env echo 0x10000000 > $P/probes", syscall.EINVAL},
		{"in .data", fmt.Sprintf("env echo %#x > $P/probes", data), syscall.EINVAL},
		{"mid-instruction", "env echo tick+2 > $P/probes", syscall.EINVAL},
		{"past symbol", "env echo tick+0x10000 > $P/probes", syscall.EINVAL},
		{"unknown symbol", "env echo no_such_function > $P/probes", syscall.ENOENT},
		{"duplicate name", "env echo tick > $P/probes", syscall.EEXIST},
		{"duplicate in batch", "env printf 'z=tock\\nz=tick\\n' > $P/probes", syscall.EEXIST},
		{"not ELF", "env echo main > $D/text/probes", syscall.ENOEXEC},
		{"ARM ELF", "env echo main > $D/arm/probes", syscall.ENOEXEC},
		{"directory", "env echo main > $D/sub/probes", syscall.EISDIR},
		{"empty write", "env echo > $P/probes", syscall.EINVAL},
		{"1 MiB line", "head -c 1048576 /dev/zero | env tr '\\0' a > $P/probes", syscall.EINVAL},
		{"NUL byte", "env printf 'tock\\000\\n' > $P/probes", syscall.EINVAL},
		{"unknown -NAME", "env echo -no_such_probe > $P/probes", syscall.ENOENT},
		{"-1 is negative", "env echo -1 > $P/probes", syscall.EINVAL},
		{"not octal", "env echo 08 > $P/probes", syscall.EINVAL},
		{"daemon's own binary", "env echo main.main > $M/proc/self/exe/probes", syscall.EDEADLK},
		{"DIR/probes read", "cat $D/sub/probes", syscall.EISDIR},
		{"unknown -:NAME", "env echo -:no_such_probe > $P/probes", syscall.ENOENT},
		{"return probe off a function's entry", "env echo 'r:ret tick+1' > $P/probes", syscall.EINVAL},
		{"bad fetch argument", "env echo 'p:x tock %zz' > $P/probes", syscall.EINVAL},
		{"path:offset", "env echo 'p:x /bin/true:0x10' > $P/probes", syscall.EINVAL},
		{"bad name", "env echo 'a/b=tock' > $P/probes", syscall.EINVAL},
		{"reserved name", "env echo 'probes=tock' > $P/probes", syscall.EINVAL},
		{"no location", "env echo 'p:x' > $P/probes", syscall.EINVAL},
		{"write hits", "env echo 1 > $P/tick/hits", syscall.EACCES},
		{"write events", "env echo 1 >> $P/tick/events", syscall.EACCES},
		{"write status", "env echo 1 > $P/tick/status", syscall.EACCES},
		{"write stats", "env echo 1 > $M/.uprobefs/stats", syscall.EACCES},
		{"write errors", "env echo 1 > $M/.uprobefs/errors", syscall.EACCES},
		{"mkdir in file", "mkdir $P/newprobe", syscall.EPERM},
		{"mkdir in mirror", "mkdir $D/newdir", syscall.EPERM},
		{"create in mirror", "touch $D/newfile", syscall.EPERM},
		{"create in probe", "touch $P/tick/newfile", syscall.EPERM},
		{"rename probe", "mv $P/tick $P/tock", syscall.EPERM},
		{"rename mirror", "mv $D/text $D/text2", syscall.EPERM},
		{"unlink probes", "rm $P/probes", syscall.EPERM},
		{"unlink mirror", "rm $D/sub/../text/probes", syscall.EPERM},
		{"rmdir mirror", "rmdir $D/sub", syscall.EPERM},
		{"symlink", "ln -s x $D/link", syscall.EPERM},
		{"chmod", "chmod 600 $P/probes", syscall.EPERM},
	}
	if len(cases) < 30 {
		t.Fatal("want at least 30 bad inputs")
	}
	errLines := func() []string {
		s := d.must("cat $M/.uprobefs/errors")
		if s == "" {
			return nil
		}
		return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	}
	for _, c := range cases {
		before := len(errLines())
		cmd := strings.NewReplacer("$P", P, "$D", D).Replace(c.cmd)
		r := d.sh(cmd)
		if r.code == 0 {
			t.Errorf("%s: %q succeeded", c.name, cmd)
			continue
		}
		if msg := c.errno.Error(); !strings.Contains(strings.ToLower(r.out), strings.ToLower(msg)) {
			t.Errorf("%s: %q: output %q lacks %q", c.name, cmd, r.out, msg)
		}
		lines := errLines()
		if len(lines) <= before {
			t.Errorf("%s: no error log line", c.name)
			continue
		}
		last := lines[len(lines)-1]
		if !strings.Contains(last, " "+unix.ErrnoName(c.errno)+" ") || !strings.Contains(last, " path=") || !strings.Contains(last, "reason: ") {
			t.Errorf("%s: error log line %q (want %s, a path and a reason)", c.name, last, unix.ErrnoName(c.errno))
		}
	}
	// Concurrent writers of the same name: exactly one wins.
	var wg sync.WaitGroup
	results := make([]result, 8)
	for i := range results {
		wg.Go(func() { results[i] = d.sh("env echo same=tock > " + P + "/probes") })
	}
	wg.Wait()
	ok := 0
	for _, r := range results {
		if r.code == 0 {
			ok++
		} else if !strings.Contains(strings.ToLower(r.out), "file exists") {
			t.Errorf("concurrent writer: %q", r.out)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent writers of one name succeeded, want 1", ok)
	}
	// Every existing probe still counts; nothing else was registered.
	if got := d.must("ls " + P); got != "probes\nsame\ntick\n" {
		t.Fatalf("ls = %q", got)
	}
	h := d.hits(P + "/tick")
	d.waitHitsAbove(P+"/tick", h)
	d.waitHitsAbove(P+"/same", 0)
	if st := d.must("cat $M/.uprobefs/stats"); !strings.Contains(st, "probes 2\n") {
		t.Fatalf("stats:\n%s", st)
	}
}

// TestEvents: cat streams lines while hits happen; O_NONBLOCK gives EAGAIN
// on an empty stream.
func TestEvents(t *testing.T) {
	d, P, fx := startFixtureRig(t, buildFixture(t))
	d.must("echo tick > " + P + "/probes")
	d.must("echo never_called > " + P + "/probes")

	const K = 50
	out := d.must(fmt.Sprintf("timeout 20 head -n %d %s/tick/events", K, P))
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != K {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), K, out)
	}
	addr := fmt.Sprintf(" pid=%d tid=%d addr=0x", fx.pid(), fx.pid())
	for _, l := range lines {
		if !strings.Contains(l, addr) {
			t.Fatalf("event line %q lacks %q", l, addr)
		}
	}
	// Two concurrent readers both stream.
	out2 := d.must(fmt.Sprintf("(timeout 20 head -n %d %s/tick/events > /dev/null &); timeout 20 head -n %d %s/tick/events | wc -l", K, P, K, P))
	if strings.TrimSpace(out2) != fmt.Sprint(K) {
		t.Fatalf("second reader: %q", out2)
	}

	fd, err := syscall.Open(P+"/never_called/events", syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if _, err := syscall.Read(fd, make([]byte, 4096)); err != syscall.EAGAIN {
		t.Fatalf("nonblocking read of an empty stream: %v, want EAGAIN", err)
	}
	// dd with iflag=nonblock, from the shell.
	if r := d.sh("dd if=" + P + "/never_called/events iflag=nonblock bs=4096 count=1"); r.code == 0 || !strings.Contains(r.out, "Resource temporarily unavailable") {
		t.Fatalf("dd nonblock: %d %q", r.code, r.out)
	}
}

// TestShutdownSIGTERM: SIGTERM while probes are live in running fixtures:
// exit 0, unmounted, fixtures running with their original text, untraced.
func TestShutdownSIGTERM(t *testing.T) {
	testShutdown(t, true, func(d *daemon) int { return d.stop(syscall.SIGTERM) })
}

// TestShutdownUmount: the same with umount MOUNTPOINT.
func TestShutdownUmount(t *testing.T) {
	// No open file in the mount: umount would fail with EBUSY.
	testShutdown(t, false, func(d *daemon) int {
		d.must("umount " + d.mnt)
		return d.wait()
	})
}

// TestShutdownLazyUmount: umount -l while a reader is blocked in events
// (so the kernel keeps the detached mount's connection open) shuts down as
// SIGTERM does: probes unregistered, processes restored, the reader at end
// of file, exit status 0.
func TestShutdownLazyUmount(t *testing.T) {
	testShutdown(t, true, func(d *daemon) int {
		d.must("umount -l " + d.mnt)
		return d.wait()
	})
}

func testShutdown(t *testing.T, withReader bool, stop func(*daemon) int) {
	d := startDaemon(t)
	bin1, bin2 := buildFixture(t), buildFixture(t)
	fx1, fx2 := startFixture(t, bin1, -1), startFixture(t, bin2, -1)
	fx3 := startFixture(t, bin1, -1) // two processes of one binary
	for _, b := range []string{bin1, bin2} {
		d.must(fmt.Sprintf("printf 'tick\\ntock\\nx=tock\\n' > %s/probes", d.in(b)))
		d.waitHitsAbove(d.in(b)+"/tick", 0)
	}
	for _, fx := range []*fixture{fx1, fx2, fx3} {
		if fx.tracerPid() == 0 {
			t.Fatalf("fixture %d not traced", fx.pid())
		}
	}
	// A reader blocked in events must not keep the daemon from exiting.
	reader := make(chan result, 1)
	if withReader {
		go func() { reader <- d.sh("cat " + d.in(bin1) + "/x/events > /dev/null") }()
		d.waitReaders(1)
	} else {
		reader <- result{}
	}

	if code := stop(d); code != 0 {
		t.Fatalf("uprobefs exit status %d\n%s", code, d.log.String())
	}
	if isMounted(d.mnt) {
		t.Fatal("still mounted")
	}
	select {
	case <-reader:
	case <-time.After(20 * time.Second):
		t.Fatal("events reader still blocked after shutdown")
	}
	for _, fx := range []*fixture{fx1, fx2, fx3} {
		if tp := fx.tracerPid(); tp != 0 {
			t.Fatalf("fixture %d: TracerPid %d after shutdown", fx.pid(), tp)
		}
		fx.checkOriginal(testfix.SymOff(t, fx.path, "tick"))
		fx.checkOriginal(testfix.SymOff(t, fx.path, "tock"))
		fx.drainBeats()
		fx.waitBeats(3)
	}
	if !strings.Contains(d.log.String(), "clean shutdown") {
		t.Fatalf("log:\n%s", d.log.String())
	}
}

// TestAllowOther: with --allow-other, an unprivileged uid's probe reaches
// only its own processes: root's processes that map the same file are
// never attached for it (TracerPid 0, text as the file), neither running
// at registration nor started later, and its counts and events hold only
// its own processes, also when root's probe on the file has root's
// processes traced. A file it cannot read, and the listing of a directory
// it cannot read, are refused (EACCES).
func TestAllowOther(t *testing.T) {
	nobody, nobodyGid := testfix.User(t) // a throwaway user, removed after
	d := startDaemon(t, "--allow-other")
	rootBin := buildFixture(t)
	userBin := buildFixture(t)
	testfix.Reachable(t, userBin, rootBin)
	os.Chown(userBin, nobody, nobodyGid)
	rootFx := startFixture(t, rootBin, -1)
	userFx := startFixture(t, userBin, nobody)

	// A root-owned file root's process runs: nobody may probe it (it can
	// read it), but reaches nothing.
	if r := d.shAs(nobody, "env echo tick > "+d.in(rootBin)+"/probes"); r.code != 0 {
		t.Fatalf("nobody probing a file root's process maps: exit %d %q", r.code, r.out)
	}
	later := startFixture(t, rootBin, -1) // started after the registration
	rootFx.waitBeats(5)
	later.waitBeats(5)
	for _, fx := range []*fixture{rootFx, later} {
		if fx.tracerPid() != 0 {
			t.Errorf("root's process %d traced for nobody's probe", fx.pid())
		}
		fx.checkOriginal(offsetOf(t, d, rootBin, "tick"))
	}
	if h := d.hits(d.in(rootBin) + "/tick"); h != 0 {
		t.Errorf("nobody's probe on root's processes: %d hits, want 0", h)
	}
	d.must("rmdir " + d.in(rootBin) + "/tick")

	// A file nobody cannot read: refused, and its listing too.
	os.Chmod(rootBin, 0o711)
	r := d.shAs(nobody, "env echo tick > "+d.in(rootBin)+"/probes")
	if r.code == 0 || !strings.Contains(strings.ToLower(r.out), "permission denied") {
		t.Fatalf("nobody probing a 0711 file: exit %d %q", r.code, r.out)
	}
	if last := lastLine(d.must("cat $M/.uprobefs/errors")); !strings.Contains(last, fmt.Sprintf("uid=%d", nobody)) || !strings.Contains(last, "EACCES") || !strings.Contains(last, "may not read") {
		t.Fatalf("error log: %q", last)
	}
	if r := d.shAs(nobody, "cat "+d.in(rootBin)+"/probes"); r.code == 0 {
		t.Fatalf("nobody read the probes of a 0711 file: %q", r.out)
	}
	os.Chmod(rootBin, 0o755)
	private := t.TempDir()
	os.Chmod(private, 0o700)
	if r := d.shAs(nobody, "ls "+d.in(private)); r.code == 0 {
		t.Fatalf("nobody listed a 0700 directory of root's through the mirror: %q", r.out)
	}

	// Its own file and process: counted; with root's probe on the same
	// file and root's process of it traced, still only its own.
	if r := d.shAs(nobody, "echo tick > "+d.in(userBin)+"/probes"); r.code != 0 {
		t.Fatalf("nobody probing its own process: exit %d %q", r.code, r.out)
	}
	d.waitHitsAbove(d.in(userBin)+"/tick", 0)
	rootOfUser := startFixture(t, userBin, -1)
	d.must("echo rootprobe=tock > " + d.in(userBin) + "/probes")
	rootOfUser.waitBeats(3)
	if rootOfUser.tracerPid() == 0 {
		t.Fatal("root's probe did not reach root's process")
	}
	d.waitHitsAbove(d.in(userBin)+"/rootprobe", 0)
	if out := d.must("timeout 20 head -n 40 " + d.in(userBin) + "/tick/events"); strings.Count(out, fmt.Sprintf("pid=%d ", userFx.pid())) != 40 {
		t.Fatalf("nobody's probe counted another process (read as root): %q", out)
	}
	if r := d.shAs(nobody, "timeout 20 head -n 3 "+d.in(userBin)+"/tick/events"); r.code != 0 || strings.Count(r.out, fmt.Sprintf("pid=%d ", userFx.pid())) != 3 {
		t.Fatalf("nobody reading its events: %d %q", r.code, r.out)
	}
	// Root's probe on the user's file cannot be removed by the user.
	if r := d.shAs(nobody, "rmdir "+d.in(userBin)+"/rootprobe"); r.code == 0 {
		t.Fatal("nobody removed root's probe")
	}
	if r := d.shAs(nobody, "rmdir "+d.in(userBin)+"/tick"); r.code != 0 {
		t.Fatalf("nobody removing its probe: %q", r.out)
	}
}

// offsetOf returns the file offset of probe name on bin from its listing.
func offsetOf(t *testing.T, d *daemon, bin, name string) uint64 {
	t.Helper()
	for _, l := range strings.Split(d.must("cat "+d.in(bin)+"/probes"), "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[0] == name {
			off, err := strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 64)
			if err == nil {
				return off
			}
		}
	}
	t.Fatalf("no probe %s on %s", name, bin)
	return 0
}

// TestMirror: the mount mirrors /, /bin/... works through the /bin symlink
// of a merged-/usr system, the mount point is not inside its own mirror,
// and absolute symlinks stay inside the mount.
func TestMirror(t *testing.T) {
	d := startDaemon(t)
	if got := d.must("ls $M | head -100"); !strings.Contains(got, "usr\n") || !strings.Contains(got, "tmp\n") {
		t.Fatalf("ls mount: %q", got)
	}
	if _, err := os.Stat(d.in(d.mnt)); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("the mount point inside the mirror: %v, want ENOENT", err)
	}
	if got := d.must("ls " + d.in(filepath.Dir(d.mnt))); got != "" {
		t.Fatalf("the mount point's parent lists %q", got)
	}
	if st, err := os.Lstat("/bin"); err == nil && st.Mode()&os.ModeSymlink != 0 {
		if target, err := os.Readlink(d.in("/bin")); err != nil || strings.HasPrefix(target, "/") && !strings.HasPrefix(target, d.mnt) {
			t.Fatalf("readlink $M/bin = %q, %v", target, err)
		}
	}
	// Reading the probes of a shared binary is harmless (no registration).
	if got := d.must("cat $M/bin/sh/probes; ls $M/bin/sh"); got != "probes\n" {
		t.Fatalf("$M/bin/sh: %q", got)
	}
	if got := d.must("cat $M/.uprobefs/stats"); !strings.Contains(got, "probes 0\n") {
		t.Fatalf("stats: %q", got)
	}
}

// TestMakeDemo runs "make demo" and checks that it works and leaves no
// mount, no process and no temporary file behind.
func TestMakeDemo(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "-s", "-C", repo, "demo")
	goflags := os.Getenv("GOFLAGS")
	if raceEnabled {
		goflags += " -race" // the build TestMain made: cached
	}
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "GOFLAGS="+strings.TrimSpace(goflags+" -mod=mod"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make demo: %v\n%s", err, out)
	}
	for _, want := range []string{"handle_request/hits", "pid=", "TracerPid:\t0", "uprobefs exited with status 0", "nothing left behind"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("make demo output lacks %q", want)
		}
	}
	if mounts, _ := os.ReadFile("/proc/mounts"); bytes.Contains(mounts, []byte(tmp)) {
		t.Errorf("a mount under %s is left:\n%s", tmp, mounts)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("files left in TMPDIR: %v", ents)
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if exe, err := os.Readlink("/proc/" + p.Name() + "/exe"); err == nil && strings.HasPrefix(exe, tmp) {
			t.Errorf("process %s (%s) is left", p.Name(), exe)
		}
	}
	if t.Failed() {
		t.Logf("make demo output:\n%s", out)
	}
}
