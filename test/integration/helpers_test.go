// Package integration tests uprobefs end to end: the uprobefs command
// mounts a real FUSE filesystem over the real ptrace world (core/proc), real
// fixture processes run, and the tests drive the mount with real shell
// commands (sh -c 'echo ... > ...', cat, ls, rmdir, rm -r).
//
// Every fixture is a private copy compiled by the test (testfix.CC). The
// fixtures are children of the test process and the tracer is the uprobefs
// process, so the tracer never traces its own children.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// uprobefsBin is the uprobefs command built by TestMain.
var uprobefsBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("integration: skipped: needs root (ptrace, mount)")
		return 0
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		fmt.Println("integration: skipped: no /dev/fuse")
		return 0
	}
	dir, err := os.MkdirTemp("", "uprobefs-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	uprobefsBin = filepath.Join(dir, "uprobefs")
	args := []string{"build", "-o", uprobefsBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append(args, "github.com/uprobefs/uprobefs/cmd/uprobefs")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build uprobefs: %v\n%s", err, out)
		return 1
	}
	return testfix.Main(m)
}

// daemon is a running "uprobefs mount".
type daemon struct {
	t    testing.TB
	cmd  *exec.Cmd
	mnt  string
	log  *testfix.SyncBuffer
	done chan struct{} // closed when the process has exited
	err  error         // its Wait error, valid after done
}

// startDaemon runs "uprobefs mount [flags] MNT" on a new mount point and
// waits until it is mounted. Cleanup stops it (SIGTERM, then SIGKILL) and
// makes sure nothing stays mounted.
func startDaemon(t testing.TB, flags ...string) *daemon {
	t.Helper()
	return startDaemonAs(t, nil, flags...)
}

// startDaemonAs is startDaemon as the user cred (nil: as the test), who
// owns the mount point then.
func startDaemonAs(t testing.TB, cred *syscall.Credential, flags ...string) *daemon {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	testfix.Reachable(t, mnt)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, mnt: mnt, log: &testfix.SyncBuffer{}, done: make(chan struct{})}
	d.cmd = exec.Command(uprobefsBin, append(append([]string{"mount"}, flags...), mnt)...)
	if cred != nil {
		if err := os.Chown(mnt, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Dir(uprobefsBin), 0o755) // its own temp dir (TestMain's)
		d.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	d.cmd.Stdout = d.log
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(d.cleanup)
	deadline := time.After(20 * time.Second)
	for !isMounted(mnt) {
		select {
		case <-d.done:
			t.Fatalf("uprobefs exited before mounting: %v\n%s", d.err, d.log.String())
		case <-deadline:
			t.Fatalf("uprobefs did not mount in time\n%s", d.log.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return d
}

func (d *daemon) cleanup() {
	select {
	case <-d.done:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			d.t.Errorf("uprobefs ignored SIGTERM for 20s; killing it\n%s", d.log.String())
			d.cmd.Process.Kill()
			<-d.done
		}
	}
	if isMounted(d.mnt) {
		if err := syscall.Unmount(d.mnt, 0); err != nil {
			syscall.Unmount(d.mnt, syscall.MNT_DETACH)
		}
		d.t.Errorf("%s was still mounted after uprobefs exited", d.mnt)
	}
	if d.t.Failed() {
		d.t.Logf("uprobefs log:\n%s", d.log.String())
	}
}

// stop sends sig and waits (with a deadline) for the daemon to exit; it
// returns the exit status.
func (d *daemon) stop(sig syscall.Signal) int {
	d.t.Helper()
	d.cmd.Process.Signal(sig)
	return d.wait()
}

// wait waits for the daemon to exit and returns its exit status.
func (d *daemon) wait() int {
	d.t.Helper()
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.t.Fatalf("uprobefs did not exit in time\n%s", d.log.String())
	}
	if d.err == nil {
		return 0
	}
	if ee, ok := d.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	d.t.Fatalf("uprobefs: %v", d.err)
	return -1
}

// killForGuardian SIGKILLs the daemon and waits (10 s each) until its
// guardian has unmounted the dead mount and exited, and the log has the
// guardian's report; it returns the time from the kill to the unmount.
func (d *daemon) killForGuardian() time.Duration {
	d.t.Helper()
	t0 := time.Now()
	d.cmd.Process.Signal(syscall.SIGKILL)
	for isMounted(d.mnt) {
		if time.Since(t0) > 10*time.Second {
			d.t.Fatalf("the dead mount is still mounted after 10s\n%s", d.log.String())
		}
		time.Sleep(time.Millisecond)
	}
	unmounted := time.Since(t0)
	select {
	case <-d.done: // the daemon, and the guardian that shares its stderr
	case <-time.After(10 * time.Second):
		d.t.Fatalf("guardian did not exit\n%s", d.log.String())
	}
	if !strings.Contains(d.log.String(), "uprobefs guardian: daemon pid") {
		d.t.Errorf("no guardian report in the log:\n%s", d.log.String())
	}
	return unmounted
}

// logGuardian copies the guardian's lines of the log into the test's.
func (d *daemon) logGuardian() {
	for l := range strings.Lines(d.log.String()) {
		if strings.Contains(l, "uprobefs guardian:") {
			d.t.Log(strings.TrimSpace(l))
		}
	}
}

// in returns the path of real path p inside the mount.
func (d *daemon) in(p string) string { return d.mnt + p }

// needTool fails the test unless the command name is installed (missing
// says what is missing and where it comes from).
func needTool(t *testing.T, name, missing string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatal(missing)
	}
}

// isMounted reports whether a uprobefs is mounted at mnt.
func isMounted(mnt string) bool {
	ms, _ := mountPoints("fuse.uprobefs")
	return slices.Contains(ms, mnt)
}

// mountPoints returns the mount points of the mounts of type fstype
// (/proc/self/mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT ... - TYPE ...).
func mountPoints(fstype string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		pre, post, ok := strings.Cut(line, " - ")
		if f := strings.Fields(pre); ok && len(f) > 4 && strings.HasPrefix(post, fstype+" ") {
			out = append(out, f[4])
		}
	}
	return out, nil
}

// isInstalled reports whether a status line says the breakpoint is in:
// "... jump" (a jump site) or "... trap: REASON".
func isInstalled(line string) bool {
	return strings.HasSuffix(line, " jump") || strings.Contains(line, " trap: ")
}

// result is what a shell command did.
type result struct {
	out  string // stdout and stderr
	code int    // exit status
}

// sh runs "sh -c cmd" (as uid, if uid >= 0) with $M set to the mount point,
// under a deadline.
func (d *daemon) shAs(uid int, cmd string) result {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Env = append(os.Environ(), "M="+d.mnt)
	c.Dir = "/"
	if uid >= 0 {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: credOf(uid)}
	}
	out, err := c.CombinedOutput()
	if ctx.Err() != nil {
		d.t.Fatalf("sh -c %q: timed out\n%s", cmd, out)
	}
	r := result{out: string(out)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		d.t.Fatalf("sh -c %q: %v", cmd, err)
	}
	return r
}

func (d *daemon) sh(cmd string) result { d.t.Helper(); return d.shAs(-1, cmd) }

// must runs cmd and fails the test unless it succeeds; it returns the output.
func (d *daemon) must(cmd string) string { d.t.Helper(); return d.mustAs(-1, cmd) }

// mustAs is must as uid (if uid >= 0).
func (d *daemon) mustAs(uid int, cmd string) string {
	d.t.Helper()
	r := d.shAs(uid, cmd)
	if r.code != 0 {
		d.t.Fatalf("sh -c %q (uid %d): exit %d\n%s", cmd, uid, r.code, r.out)
	}
	return r.out
}

// hits returns the hit count of a probe (by its directory in the mount).
func (d *daemon) hits(probeDir string) uint64 { d.t.Helper(); return d.hitsAs(-1, probeDir) }

// hitsAs is hits read as uid (if uid >= 0).
func (d *daemon) hitsAs(uid int, probeDir string) uint64 {
	d.t.Helper()
	out := strings.TrimSpace(d.mustAs(uid, "cat "+probeDir+"/hits"))
	n, err := strconv.ParseUint(out, 10, 64)
	if err != nil {
		d.t.Fatalf("hits of %s = %q", probeDir, out)
	}
	return n
}

// waitHitsAbove waits until the probe's hits exceed n and returns them.
func (d *daemon) waitHitsAbove(probeDir string, n uint64) uint64 {
	d.t.Helper()
	return d.waitHitsAboveAs(-1, probeDir, n)
}

// waitHitsAboveAs is waitHitsAbove with the hits read as uid (if uid >= 0).
func (d *daemon) waitHitsAboveAs(uid int, probeDir string, n uint64) uint64 {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		h := d.hitsAs(uid, probeDir)
		if h > n {
			return h
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("hits of %s stayed at %d (want > %d)\n%s", probeDir, h, n, d.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitReaders waits until n events files are open (stats event_readers).
func (d *daemon) waitReaders(n int) {
	d.t.Helper()
	want := fmt.Sprintf("event_readers %d\n", n)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(d.must("cat $M/.uprobefs/stats"), want) {
		if time.Now().After(deadline) {
			d.t.Fatalf("no %q in stats", want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startLines starts cmd with pipes (testfix.StartPiped: cleanup kills it)
// and returns its stdin and its stdout's lines (the channel, of capacity
// n, is closed at end of file).
func startLines(t *testing.T, cmd *exec.Cmd, n int) (io.WriteCloser, chan string) {
	t.Helper()
	stdin, out := testfix.StartPiped(t, cmd)
	lines := make(chan string, n)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return stdin, lines
}

// fixture is a running fixture process.
type fixture struct {
	t     *testing.T
	path  string
	cmd   *exec.Cmd
	beats chan struct{} // one value per heartbeat byte
	done  chan struct{}
}

// buildFixture returns a private copy of the shared target fixture
// (internal/testfix/testdata/target.c).
func buildFixture(t *testing.T) string {
	t.Helper()
	return testfix.Target(t)
}

// startFixtureRig starts a daemon (mount flags) and one process of the
// fixture bin (a private copy; fx.path); P is bin's directory in the
// mount.
func startFixtureRig(t *testing.T, bin string, flags ...string) (d *daemon, P string, fx *fixture) {
	t.Helper()
	d = startDaemon(t, flags...)
	fx = startFixture(t, bin, -1)
	return d, d.in(bin), fx
}

// startFixture runs the fixture at path (as uid, if uid >= 0). Cleanup
// kills it.
func startFixture(t *testing.T, path string, uid int) *fixture {
	t.Helper()
	cmd := exec.Command(path)
	if uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: credOf(uid)}
	}
	return startFixtureCmd(t, path, cmd)
}

// startFixtureCmd is startFixture with the command made by the caller (it
// must exec the fixture, known as path in its mount namespace).
func startFixtureCmd(t *testing.T, path string, cmd *exec.Cmd) *fixture {
	t.Helper()
	f := &fixture{t: t, path: path, cmd: cmd, beats: make(chan struct{}, 1<<16), done: make(chan struct{})}
	r, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(f.done)
		br := bufio.NewReader(r)
		for {
			if _, err := br.ReadByte(); err != nil {
				return
			}
			select {
			case f.beats <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		f.cmd.Process.Kill()
		f.cmd.Wait()
	})
	f.waitBeats(1) // running, its text mapped
	return f
}

func (f *fixture) pid() int { return f.cmd.Process.Pid }

// waitBeats waits for n more heartbeats (the fixture keeps running).
func (f *fixture) waitBeats(n int) {
	f.t.Helper()
	deadline := time.After(15 * time.Second)
	for range n {
		select {
		case <-f.beats:
		case <-f.done:
			f.t.Fatalf("fixture %d ended", f.pid())
		case <-deadline:
			f.t.Fatalf("fixture %d made no progress", f.pid())
		}
	}
}

// drainBeats forgets the heartbeats so far.
func (f *fixture) drainBeats() {
	for {
		select {
		case <-f.beats:
		default:
			return
		}
	}
}

// tracerPid returns the TracerPid of the fixture.
func (f *fixture) tracerPid() int {
	f.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", f.pid()))
	if err != nil {
		f.t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "TracerPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	f.t.Fatal("no TracerPid")
	return -1
}

// waitUntraced waits until the fixture has no tracer.
func (f *fixture) waitUntraced() {
	f.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for f.tracerPid() != 0 {
		if time.Now().After(deadline) {
			f.t.Fatalf("fixture %d still traced by %d", f.pid(), f.tracerPid())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// text returns n bytes of the fixture's memory at file offset off of its
// executable mapping.
func (f *fixture) text(off uint64, n int) []byte {
	f.t.Helper()
	vaddr := textVaddr(f.t, f.pid(), f.path, off)
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", f.pid()))
	if err != nil {
		f.t.Fatal(err)
	}
	defer mem.Close()
	b := make([]byte, n)
	if _, err := mem.ReadAt(b, int64(vaddr)); err != nil {
		f.t.Fatal(err)
	}
	return b
}

// readMaps returns /proc/PID/maps.
func readMaps(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// textVaddr is the address of file offset off of path in pid's executable
// mapping of it.
func textVaddr(t *testing.T, pid int, path string, off uint64) uint64 {
	t.Helper()
	for line := range strings.Lines(readMaps(t, pid)) {
		fl := strings.Fields(line)
		if len(fl) < 6 || fl[5] != path || !strings.Contains(fl[1], "x") {
			continue
		}
		var start, end, pgoff uint64
		fmt.Sscanf(fl[0], "%x-%x", &start, &end)
		fmt.Sscanf(fl[2], "%x", &pgoff)
		if off >= pgoff && off-pgoff < end-start {
			return start + off - pgoff
		}
	}
	t.Fatalf("pid %d does not map %s at %#x", pid, path, off)
	return 0
}

// checkOriginal checks that the fixture's text at off is the file's.
func (f *fixture) checkOriginal(off uint64) {
	f.t.Helper()
	want := fileBytes(f.t, f.path, off, 16)
	if got := f.text(off, 16); !bytes.Equal(got, want) {
		f.t.Fatalf("fixture %d text at %#x = %s, file has %s", f.pid(), off, hex.EncodeToString(got), hex.EncodeToString(want))
	}
}

func fileBytes(t *testing.T, path string, off uint64, n int) []byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	b := make([]byte, n)
	if _, err := fh.ReadAt(b, int64(off)); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return b
}

// credOf is the credential of uid: its primary group from the user
// database (a throwaway user's own group), else gid = uid (nobody's).
func credOf(uid int) *syscall.Credential {
	gid := uid
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		if g, err := strconv.Atoi(u.Gid); err == nil {
			gid = g
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}
