package proc

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/objfile"
	"github.com/uprobefs/uprobefs/internal/procfs"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// buildOnce compiles testdata/name.c with flags once per test binary
// (testfix.Build) and returns the binary path. Tests that probe a binary
// must take a private copy with testfix.Copy.
func buildOnce(t testing.TB, name string, flags ...string) string {
	t.Helper()
	return testfix.Build(t, "testdata/"+name+".c", flags...)
}

// fixture is a C fixture started through the relay, so that it is not a
// child of the test process.
type fixture struct {
	t      testing.TB
	Pid    int
	relay  *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	outAll strings.Builder
	waited bool
	status int
}

// startFixtures starts k fixtures "bin args..." (startFixture).
func startFixtures(t testing.TB, k int, bin string, args ...string) []*fixture {
	t.Helper()
	fs := make([]*fixture, k)
	for i := range fs {
		fs[i] = startFixture(t, bin, args...)
	}
	return fs
}

// startFixture runs bin args... under the relay and returns once its pid is
// known. The fixture's cleanup kills it (by pid) and the relay.
func startFixture(t testing.TB, bin string, args ...string) *fixture {
	t.Helper()
	relay := buildOnce(t, "relay", "-O2")
	cmd := exec.Command(relay, append([]string{bin}, args...)...)
	cmd.Stderr = os.Stderr
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{pw}
	in, outp := testfix.StartPiped(t, cmd)
	pw.Close()
	f := &fixture{t: t, relay: cmd, stdin: in, out: bufio.NewReader(outp)}
	t.Cleanup(f.kill)
	// The relay writes the pid to fd 3 once the fixture has exec'd.
	pc := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(pr)
		pr.Close()
		pc <- string(b)
	}()
	var line string
	select {
	case line = <-pc:
	case <-time.After(10 * time.Second):
		t.Fatal("relay: no pid within 10s")
	}
	f.Pid, err = strconv.Atoi(strings.TrimSpace(line))
	if err != nil || f.Pid <= 0 {
		t.Fatalf("relay wrote pid %q", line)
	}
	return f
}

// readLine reads one line of the fixture's output with a deadline.
func (f *fixture) readLine(d time.Duration) (string, error) {
	type res struct {
		s   string
		err error
	}
	c := make(chan res, 1)
	go func() {
		s, err := f.out.ReadString('\n')
		c <- res{s, err}
	}()
	select {
	case r := <-c:
		return r.s, r.err
	case <-time.After(d):
		return "", fmt.Errorf("no output within %v", d)
	}
}

// Go sends a line on the fixture's stdin (fixtures wait for it to start).
func (f *fixture) Go() {
	f.t.Helper()
	if _, err := io.WriteString(f.stdin, "go\n"); err != nil {
		f.t.Fatalf("fixture %d stdin: %v", f.Pid, err)
	}
}

// Wait waits (with a deadline) for the fixture to end and returns all its
// remaining output and its exit status (code, or 128+signal).
func (f *fixture) Wait(d time.Duration) (string, int) {
	f.t.Helper()
	f.stdin.Close()
	c := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(f.out)
		c <- string(b)
	}()
	var out string
	select {
	case out = <-c:
	case <-time.After(d):
		f.t.Fatalf("fixture %d did not end within %v", f.Pid, d)
	}
	err := f.relay.Wait()
	f.waited = true
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		f.t.Fatalf("relay: %v", err)
	}
	return out, code
}

func (f *fixture) kill() {
	if f.waited {
		return
	}
	if f.Pid > 0 {
		syscall.Kill(f.Pid, syscall.SIGKILL)
	}
	f.relay.Process.Kill()
	f.stdin.Close()
	done := make(chan struct{})
	go func() { f.relay.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		f.t.Errorf("relay of fixture %d not reaped", f.Pid)
	}
	f.waited = true
}

// tracerPid returns the TracerPid of /proc/pid/status.
func tracerPid(t testing.TB, pid int) int {
	st, err := procfs.PidStatus(pid)
	if err != nil {
		t.Fatalf("status of %d: %v", pid, err)
	}
	return st.TracerPid
}

// wantUntouched checks what a process must look like once the world has
// let it go: pid is not traced, and its executable mappings of bin hold
// the file's bytes.
func wantUntouched(t *testing.T, pid int, bin string) {
	t.Helper()
	if tp := tracerPid(t, pid); tp != 0 {
		t.Errorf("pid %d: TracerPid %d", pid, tp)
	}
	textEqualsFile(t, pid, bin)
}

// unwatch has the world stop watching bin and forgets that it watched it
// (the next register watches it again).
func (e *env) unwatch(bin string) {
	e.t.Helper()
	k := keyOf(e.t, bin)
	e.w.Unwatch(e.inodes.Get(k))
	delete(e.watched, k)
}

// sumMaps adds up f over the mappings of pid.
func sumMaps(t testing.TB, pid int, f func(procfs.Mapping) int) int {
	t.Helper()
	ms, err := procfs.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range ms {
		n += f(m)
	}
	return n
}

// resolveIn resolves loc in the file path; a failure to open path fails
// tb, the error returned is Resolve's.
func resolveIn(tb testing.TB, path, loc string) (uint64, error) {
	tb.Helper()
	f, err := objfile.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	return f.Resolve(loc)
}
