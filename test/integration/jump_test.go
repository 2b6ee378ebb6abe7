package integration

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// Jump sites (issue 12) through the real mount: a probe whose consumers only
// count is hit through a jmp into a trampoline, and status says so. The
// fixture is testdata/jump.c; its j_func starts with three instructions
// (8 bytes) that a jump site displaces.

// Status modes of a site, as core/proc's SiteMode words them.
const (
	modeJump   = "jump"
	modeTrapOp = "trap: jump sites disabled (trap mount option)"
	// A probe whose events are read stays a jump site: its trampolines
	// append the events to a ring shared with the daemon.
	modeEvents = modeJump
	// A process started after the probe: a jump from its first hit.
	modeFirstHit = "trap: a jump from its first hit (the process started after the probe)"
)

// jumpFixture returns a private copy of testdata/jump.c, compiled once per
// test (each call a new inode).
func jumpFixture(t *testing.T) string {
	t.Helper()
	return testfix.Copy(t, testfix.CC(t, "testdata/jump.c", "-O2", "-pthread", "-fcf-protection=none"))
}

// jumpWant is the sum jump.c prints for "T N" (computed here, without it).
func jumpWant(threads, n uint64) uint64 {
	var s uint64
	for i := range threads {
		for k := range n {
			s += (i<<40 + k + 1) ^ 0x5a
		}
	}
	return s
}

// jproc is a running jump fixture, driven line by line through its stdin.
type jproc struct {
	t     *testing.T
	bin   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // its stdout, closed at end of file
}

// startJump runs bin (a jump fixture) and waits for its "ready". Cleanup
// kills it (testfix.StartPiped).
func startJump(t *testing.T, bin string) *jproc {
	t.Helper()
	j := &jproc{t: t, bin: bin, cmd: exec.Command(bin)}
	j.stdin, j.lines = startLines(t, j.cmd, 16)
	j.expect("ready")
	return j
}

// startJumpRig starts a daemon (mount flags) and one process of a private
// copy of the jump fixture (its path is j.bin); P is that copy's directory
// in the mount. The probes are up to the test.
func startJumpRig(t *testing.T, flags ...string) (d *daemon, P string, j *jproc) {
	t.Helper()
	d = startDaemon(t, flags...)
	bin := jumpFixture(t)
	return d, d.in(bin), startJump(t, bin)
}

// probeJump registers probe sym (a symbol of the file at P) and waits until
// it is a jump site in j; it returns the site's vaddr.
func (d *daemon) probeJump(P, sym string, j *jproc) string {
	d.t.Helper()
	d.must("echo " + sym + " > " + P + "/probes")
	return d.waitMode(P+"/"+sym, j.pid(), modeJump)
}

func (j *jproc) pid() int { return j.cmd.Process.Pid }

// line returns the next line the fixture prints (deadline: 2 minutes, the
// trap path's 16000 hits under -race take seconds).
func (j *jproc) line() string {
	j.t.Helper()
	select {
	case l, ok := <-j.lines:
		if !ok {
			j.t.Fatalf("jump fixture %d: end of output", j.pid())
		}
		return l
	case <-time.After(2 * time.Minute):
		j.t.Fatalf("jump fixture %d: no output in 2 minutes", j.pid())
	}
	return ""
}

func (j *jproc) expect(want string) {
	j.t.Helper()
	if got := j.line(); got != want {
		j.t.Fatalf("jump fixture %d printed %q, want %q", j.pid(), got, want)
	}
}

func (j *jproc) send(cmd string) {
	j.t.Helper()
	if _, err := io.WriteString(j.stdin, cmd+"\n"); err != nil {
		j.t.Fatalf("jump fixture %d: %v", j.pid(), err)
	}
}

// batch runs "T N" and checks the sum against jumpWant.
func (j *jproc) batch(threads, n uint64) {
	j.t.Helper()
	j.send(fmt.Sprintf("%d %d", threads, n))
	j.expect(fmt.Sprintf("sum %d", jumpWant(threads, n)))
}

// spin starts threads threads calling j_func until "stop".
func (j *jproc) spin(threads int) {
	j.t.Helper()
	j.send(fmt.Sprintf("spin %d", threads))
	j.expect("ok 1")
}

// stopSpin ends a "spin": it returns the calls made and the line printed;
// calls is 0 unless the sum is right.
func (j *jproc) stopSpin() (calls uint64, line string) {
	j.t.Helper()
	j.send("stop")
	line = j.line()
	var c, sum, want uint64
	if _, err := fmt.Sscanf(line, "spin %d sum %d want %d", &c, &sum, &want); err != nil || sum != want {
		return 0, line
	}
	return c, line
}

// spinDone ends a "spin" whose sum must be right (after says when, for
// the failure) and returns the calls made.
func (j *jproc) spinDone(after string) uint64 {
	j.t.Helper()
	c, l := j.stopSpin()
	if c == 0 {
		j.t.Fatalf("%s: %q, want spin C sum S want S", after, l)
	}
	return c
}

// finish closes the fixture's stdin and checks that it exits 0 with
// nothing more printed.
func (j *jproc) finish() {
	j.t.Helper()
	j.stdin.Close()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-j.lines:
			if ok {
				j.t.Errorf("jump fixture %d printed %q at the end", j.pid(), l)
				continue
			}
		case <-deadline:
			j.t.Fatalf("jump fixture %d did not end", j.pid())
		}
		break
	}
	waited := make(chan error, 1)
	go func() { waited <- j.cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			j.t.Fatalf("jump fixture %d: %v", j.pid(), err)
		}
	case <-time.After(30 * time.Second):
		j.cmd.Process.Kill()
		<-waited
		j.t.Fatalf("jump fixture %d did not exit after its output ended", j.pid())
	}
}

// fx is j as a fixture (its text, its tracer).
func (j *jproc) fx() *fixture { return &fixture{t: j.t, path: j.bin, cmd: j.cmd} }

// text is n bytes of the fixture's text at file offset off.
func (j *jproc) text(off uint64, n int) []byte { return j.fx().text(off, n) }

// checkOriginal checks that the fixture's text at off is the file's.
func (j *jproc) checkOriginal(off uint64) {
	j.t.Helper()
	j.fx().checkOriginal(off)
}

// wantByte checks the first byte of the fixture's text at off (what says
// where and when, for the failure).
func (j *jproc) wantByte(off uint64, want byte, what string) {
	j.t.Helper()
	if b := j.text(off, 1)[0]; b != want {
		j.t.Fatalf("pid %d: first byte of %s = %#x, want %#x", j.pid(), what, b, want)
	}
}

// siteLine returns the mode and the vaddr of pid's line in the status of
// the probe at dir ("" if it has none).
func (d *daemon) siteLine(dir string, pid int) (mode, vaddr string) {
	d.t.Helper()
	prefix := fmt.Sprintf("pid=%d vaddr=", pid)
	for l := range strings.Lines(d.must("cat " + dir + "/status")) {
		if rest, ok := strings.CutPrefix(strings.TrimSuffix(l, "\n"), prefix); ok {
			vaddr, mode, _ = strings.Cut(rest, " ")
			return mode, vaddr
		}
	}
	return "", ""
}

// waitMode waits (deadline 20 s) until pid's status line of the probe at
// dir shows mode; it returns the site's vaddr.
func (d *daemon) waitMode(dir string, pid int, mode string) string {
	d.t.Helper()
	_, vaddr := d.waitModeMatch(dir, pid, fmt.Sprintf("%q", mode), func(m string) bool { return m == mode })
	return vaddr
}

// waitModeMatch waits (deadline 20 s) until pid's status line of the probe
// at dir shows a mode that ok accepts (want describes it); it returns the
// mode and the site's vaddr.
func (d *daemon) waitModeMatch(dir string, pid int, want string, ok func(string) bool) (mode, vaddr string) {
	d.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, vaddr := d.siteLine(dir, pid)
		if ok(m) {
			return m, vaddr
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("status of %s for pid %d: %q after 20s, want %s; status:\n%s", dir, pid, m, want, d.must("cat "+dir+"/status"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wantHits checks the probe's exact hit count.
func (d *daemon) wantHits(dir string, want uint64) {
	d.t.Helper()
	if got := d.hits(dir); got != want {
		d.t.Fatalf("hits of %s = %d, want %d", dir, got, want)
	}
}

// wantMode checks that pid's status line of the probe at dir shows mode
// now (when says when, for the failure).
func (d *daemon) wantMode(dir string, pid int, mode, when string) {
	d.t.Helper()
	if m, _ := d.siteLine(dir, pid); m != mode {
		d.t.Fatalf("status of %s for pid %d %s: %q, want %q", dir, pid, when, m, mode)
	}
}

// TestJumpExact: a counting probe of a C function becomes a jump site in
// the fixture's process; 8 threads × N calls give exactly 8N hits, the
// same sum as a run without the probe, exit status 0; once the probe is
// removed the text is the file's again and the process is let go.
func TestJumpExact(t *testing.T) {
	d, P, j := startJumpRig(t)
	off := testfix.SymOff(t, j.bin, "j_func")
	const T, N = 8, 200000

	// Unprobed: jump.c's sum is jumpWant's.
	u := startJump(t, j.bin)
	u.batch(T, N)
	u.finish()

	vaddr := d.probeJump(P, "j_func", j)
	j.wantByte(off, 0xe9, "j_func at "+vaddr+" with a jump site (jmp rel32)")
	j.batch(T, N)
	d.wantHits(P+"/j_func", T*N)
	d.wantMode(P+"/j_func", j.pid(), modeJump, "after the calls")
	j.batch(T, N)
	d.wantHits(P+"/j_func", 2*T*N)

	d.must("rmdir " + P + "/j_func")
	j.checkOriginal(off)
	j.fx().waitUntraced()
	j.batch(T, N) // on the original text
	j.finish()
}

// TestJumpTrapOption: with mount --trap the same probe stays on the trap
// path, says why in status, and counts exactly.
func TestJumpTrapOption(t *testing.T) {
	d, P, j := startJumpRig(t, "--trap")
	off := testfix.SymOff(t, j.bin, "j_func")
	const T, N = 8, 2000
	d.must("echo j_func > " + P + "/probes")
	d.waitMode(P+"/j_func", j.pid(), modeTrapOp)
	j.wantByte(off, 0xcc, "j_func on the trap path")
	j.batch(T, N)
	d.wantHits(P+"/j_func", T*N)
	d.wantMode(P+"/j_func", j.pid(), modeTrapOp, "after the calls")
	d.must("rmdir " + P + "/j_func")
	j.checkOriginal(off)
	j.finish()
}

// eventsReader is a cat of an events file, its lines counted.
type eventsReader struct {
	cmd   *exec.Cmd
	lines chan string // closed at cat's end of output
}

// readEvents starts "cat FILE" (a child of the test; cleanup kills it).
func readEvents(t *testing.T, file string) *eventsReader {
	t.Helper()
	r := &eventsReader{cmd: exec.Command("cat", file)}
	_, r.lines = startLines(t, r.cmd, 1<<16)
	return r
}

// take returns the next n lines (deadline: 2 minutes).
func (r *eventsReader) take(t *testing.T, n int) []string {
	t.Helper()
	var got []string
	deadline := time.After(2 * time.Minute)
	for len(got) < n {
		select {
		case l, ok := <-r.lines:
			if !ok {
				t.Fatalf("events: end of file after %d of %d lines", len(got), n)
			}
			got = append(got, l)
		case <-deadline:
			t.Fatalf("events: %d of %d lines in 2 minutes", len(got), n)
		}
	}
	return got
}

// close kills cat and returns the lines it still printed.
func (r *eventsReader) close(t *testing.T) []string {
	t.Helper()
	r.cmd.Process.Kill()
	var rest []string
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-r.lines:
			if !ok {
				r.cmd.Wait()
				return rest
			}
			rest = append(rest, l)
		case <-deadline:
			t.Fatal("events reader: no end of output 30s after its kill")
		}
	}
}

// TestJumpEvents: with an events reader the site stays a jump site (its
// trampoline appends the events to the shared ring) and the reader sees
// every hit from then on, from every thread; when it closes, the site is
// still a jump; the hit count is exact throughout.
func TestJumpEvents(t *testing.T) {
	d, P, j := startJumpRig(t)
	const T, NA, NB, NC = 8, 100000, 1000, 100000
	vaddr := d.probeJump(P, "j_func", j)
	j.batch(T, NA)
	d.wantHits(P+"/j_func", T*NA)

	r := readEvents(t, P+"/j_func/events")
	d.waitReaders(1)
	if v := d.waitMode(P+"/j_func", j.pid(), modeEvents); v != vaddr {
		t.Fatalf("vaddr %s with a reader, %s without", v, vaddr)
	}
	j.batch(T, NB)
	lines := r.take(t, T*NB)
	d.wantHits(P+"/j_func", T*(NA+NB))
	tids := map[int]int{}
	head := fmt.Sprintf(" pid=%d tid=", j.pid())
	for _, l := range lines {
		_, rest, ok := strings.Cut(l, head)
		tid, addr, ok2 := strings.Cut(rest, " ")
		n, err := strconv.Atoi(tid)
		if !ok || !ok2 || err != nil || addr != "addr="+vaddr {
			t.Fatalf("event %q: want pid=%d tid=T addr=%s", l, j.pid(), vaddr)
		}
		tids[n]++
	}
	if len(tids) != T {
		t.Fatalf("events of %d threads, want %d: %v", len(tids), T, tids)
	}
	for tid, n := range tids {
		if tid == j.pid() || n != NB {
			t.Fatalf("thread %d: %d events, want %d from each of the %d workers (not the main thread %d)", tid, n, NB, T, j.pid())
		}
	}

	if rest := r.close(t); len(rest) != 0 {
		t.Fatalf("%d events more than the %d hits while reading, first %q", len(rest), T*NB, rest[0])
	}
	d.waitReaders(0)
	d.waitMode(P+"/j_func", j.pid(), modeJump)
	j.batch(T, NC)
	d.wantHits(P+"/j_func", T*(NA+NB+NC))
	if st := d.must("cat $M/.uprobefs/stats"); !strings.Contains(st, "events_lost 0\n") {
		t.Fatalf("events lost:\n%s", st)
	}
	j.finish()
}

// TestJumpExec: a process whose probe is a jump site execs itself; the new
// image gets a jump site of its own at its first hit (a new trampoline
// region in its maps, none before) and the count stays exact over both
// images.
func TestJumpExec(t *testing.T) {
	d, P, j := startJumpRig(t)
	const T, N = 8, 100000
	v1 := d.probeJump(P, "j_func", j)
	j.batch(T, N)
	d.wantHits(P+"/j_func", T*N)

	j.send("x")
	j.expect("ready")
	// The new image's site becomes a jump at its first hit.
	d.waitMode(P+"/j_func", j.pid(), modeFirstHit)
	if len(jumpMaps(t, j.pid())) != 0 {
		t.Fatalf("the new image maps a trampoline region before its first hit:\n%s", readMaps(t, j.pid()))
	}
	j.batch(T, N)
	d.wantHits(P+"/j_func", 2*T*N)
	v2 := d.waitMode(P+"/j_func", j.pid(), modeJump)
	if len(jumpMaps(t, j.pid())) == 0 {
		t.Fatalf("the new image is a jump site (status) but maps no trampoline region:\n%s", readMaps(t, j.pid()))
	}
	t.Logf("j_func at %s before the exec, %s after", v1, v2)
	j.batch(T, N)
	d.wantHits(P+"/j_func", 3*T*N)
	j.finish()
	d.wantHits(P+"/j_func", 3*T*N) // the counts of an exited process stay
}

// TestJumpFork: a fork child of a process with a jump site runs its calls
// at the same time as its parent; both sums are right (the child checks
// its own and exits 0) and the hits are exactly every call of both.
func TestJumpFork(t *testing.T) {
	d, P, j := startJumpRig(t)
	const T, N = 8, 100000
	d.probeJump(P, "j_func", j)
	j.batch(T, N)
	d.wantHits(P+"/j_func", T*N)
	for i := range 3 {
		j.send(fmt.Sprintf("f %d %d", T, N))
		j.expect(fmt.Sprintf("fork sum %d exit 0", jumpWant(T, N)))
		d.wantHits(P+"/j_func", uint64(3+2*i)*T*N)
	}
	j.batch(T, N)
	d.wantHits(P+"/j_func", 8*T*N)
	d.wantMode(P+"/j_func", j.pid(), modeJump, "(the parent) after the forks")
	j.finish()
}

// TestJumpChurn: 8 threads call j_func at full speed while its probe is
// registered and removed through the mount 30 times (every other time
// only after the site became a jump): the threads' sum stays right, the
// process exits 0, and its text is the file's at the end.
func TestJumpChurn(t *testing.T) {
	d, P, j := startJumpRig(t)
	off := testfix.SymOff(t, j.bin, "j_func")
	const T, K = 8, 30
	j.spin(T)
	jumps := 0
	for i := range K {
		d.must("echo j_func > " + P + "/probes")
		d.waitHitsAbove(P+"/j_func", 0)
		if i%2 == 0 {
			d.waitMode(P+"/j_func", j.pid(), modeJump)
			jumps++
		}
		d.must("rmdir " + P + "/j_func")
		j.checkOriginal(off)
	}
	c := j.spinDone(fmt.Sprintf("after %d registrations (%d as jump sites)", K, jumps))
	j.checkOriginal(off)
	j.finish()
	t.Logf("%d registrations and removals (%d waited for the jump) while 8 threads made %d calls", K, jumps, c)
}

// TestJumpExecSpinning: the main thread execs while 8 other threads call
// j_func through its jump site (the kernel kills them wherever they are,
// in the trampoline too); the new image gets its own site (a jump from its
// first hit) and, once the old image's hits are in, counts its own calls
// exactly.
func TestJumpExecSpinning(t *testing.T) {
	d, P, j := startJumpRig(t)
	const T, N = 8, 100000
	d.probeJump(P, "j_func", j)
	j.spin(T)
	d.waitHitsAbove(P+"/j_func", 100000)
	j.send("x")
	j.expect("ready")
	d.waitMode(P+"/j_func", j.pid(), modeFirstHit)
	h0 := d.hits(P + "/j_func")
	j.batch(T, N)
	d.wantHits(P+"/j_func", h0+T*N)
	d.waitMode(P+"/j_func", j.pid(), modeJump) // from its first hit
	j.batch(T, N)
	d.wantHits(P+"/j_func", h0+2*T*N)
	j.finish()
	t.Logf("%d hits of the old image's 8 spinning threads before the exec", h0)
}

// TestJumpEventsSpinning: while 8 threads call j_func at full speed, an
// events reader comes and goes 5 times: each time the site goes to the
// trap path (events stream, from the spinning threads) and back to a jump
// when the reader closes; the threads' sum stays right.
func TestJumpEventsSpinning(t *testing.T) {
	d, P, j := startJumpRig(t)
	off := testfix.SymOff(t, j.bin, "j_func")
	const T, K = 8, 5
	d.probeJump(P, "j_func", j)
	j.spin(T)
	for range K {
		r := readEvents(t, P+"/j_func/events")
		d.waitMode(P+"/j_func", j.pid(), modeEvents)
		j.wantByte(off, 0xe9, "j_func while its events are read (the jump site's jmp)")
		r.take(t, 500)
		r.close(t)
		d.waitReaders(0)
		d.waitMode(P+"/j_func", j.pid(), modeJump)
		h := d.hits(P + "/j_func")
		d.waitHitsAbove(P+"/j_func", h+100000)
	}
	j.spinDone(fmt.Sprintf("after %d readers", K))
	d.must("rmdir " + P + "/j_func")
	j.checkOriginal(off)
	j.finish()
}

// TestJumpSwitchUnderLoad: the calls start the moment the registration's
// write returns, so the site switches from the trap path to the jump
// while 8 threads call through it: every call counted, sum right.
func TestJumpSwitchUnderLoad(t *testing.T) {
	d, P, j := startJumpRig(t)
	const T, N = 8, 50000
	for i := range 3 {
		d.must("echo j_func > " + P + "/probes")
		j.batch(T, N)
		d.wantHits(P+"/j_func", T*N)
		d.waitMode(P+"/j_func", j.pid(), modeJump)
		if i < 2 {
			d.must("rmdir " + P + "/j_func")
		}
	}
	j.finish()
}

// TestJumpSignals: 8 threads run through j_func's jump site while SIGALRM
// arrives every 100 µs, handled by those threads with a handler that calls
// j_func too (a signal may find a thread inside the trampoline): every
// call, the handler's included, is counted exactly once, both sums are
// right, and the site stays a jump.
func TestJumpSignals(t *testing.T) {
	d, P, j := startJumpRig(t)
	d.probeJump(P, "j_func", j)
	j.send("sig 8 100")
	j.expect("ok 1")
	h := d.waitHitsAbove(P+"/j_func", 0)
	for range 3 {
		h = d.waitHitsAbove(P+"/j_func", h+10000000)
	}
	j.send("stop")
	l := j.line()
	var c, sum, want, sigs uint64
	if _, err := fmt.Sscanf(l, "spin %d sum %d want %d sig %d", &c, &sum, &want, &sigs); err != nil || sum != want {
		t.Fatalf("%q, want spin C sum S want S sig K", l)
	}
	if sigs < 100 {
		t.Fatalf("only %d signals handled: %q", sigs, l)
	}
	d.wantHits(P+"/j_func", c)
	d.wantMode(P+"/j_func", j.pid(), modeJump, "after the signals")
	j.finish()
	t.Logf("%d calls, %d of them in signal handlers", c, sigs)
}

// TestJumpFault: a displaced instruction of a jump site faults (j_load's
// mov, at +1, reads NULL): the program's SIGSEGV handler sees the fault at
// j_load+1 with the stack as natively, never the trampoline; the site then
// stays on the trap path in this process (status says why), and every
// call, the faulting one included, is counted.
func TestJumpFault(t *testing.T) {
	d, P, j := startJumpRig(t)
	const N = 1000
	d.probeJump(P, "j_load", j)
	j.send(fmt.Sprintf("g %d", N))
	j.expect("fault ok")
	d.wantHits(P+"/j_load", 2*N+1)
	d.waitMode(P+"/j_load", j.pid(), "trap: a displaced instruction faulted")
	j.send(fmt.Sprintf("g %d", N))
	j.expect("fault ok")
	d.wantHits(P+"/j_load", 4*N+2)
	j.finish()
}

// TestJumpForkSpinning: a fork loop while hitting. 8 threads run through
// j_func's jump site while the main thread forks 10 times; each time the
// parent and the child (which inherits the jmp and the trampoline) run 8 ×
// N calls more. Every sum is right, every child exits 0, and the hits are
// exactly all the calls of all the processes.
func TestJumpForkSpinning(t *testing.T) {
	d, P, j := startJumpRig(t)
	const T, N, K = 8, 10000, 10
	d.probeJump(P, "j_func", j)
	j.spin(T)
	for range K {
		j.send(fmt.Sprintf("f %d %d", T, N))
		j.expect(fmt.Sprintf("fork sum %d exit 0", jumpWant(T, N)))
	}
	c := j.spinDone(fmt.Sprintf("after %d forks", K))
	d.wantHits(P+"/j_func", c+2*K*T*N)
	d.wantMode(P+"/j_func", j.pid(), modeJump, "after the forks")
	j.finish()
}

// jumpMaps returns the /proc/PID/maps lines of pid's trampoline regions.
func jumpMaps(t *testing.T, pid int) []string {
	t.Helper()
	var out []string
	for l := range strings.Lines(readMaps(t, pid)) {
		if strings.Contains(l, "/memfd:uprobefs-jump") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// TestJumpForkChild: a fork child that lives on is a jump site of its own
// in status; its jmp leads into trampoline memory that is not its
// parent's (another memfd: its counts are its own; the parent's region it
// inherited stays mapped, unused); and when it runs, its calls and its
// parent's are all counted, once.
func TestJumpForkChild(t *testing.T) {
	d, P, j := startJumpRig(t)
	off := testfix.SymOff(t, j.bin, "j_func")
	const T, N = 8, 100000
	pv := d.probeJump(P, "j_func", j)
	j.batch(T, N)
	j.send(fmt.Sprintf("F %d %d", T, N))
	var child int
	if _, err := fmt.Sscanf(j.line(), "child %d", &child); err != nil {
		t.Fatal(err)
	}
	cv := d.waitMode(P+"/j_func", child, modeJump)
	ptr := jumpTarget(t, j, off, pv)
	cp, err := os.FindProcess(child) // only its pid is used: never signalled
	if err != nil {
		t.Fatal(err)
	}
	cfx := &jproc{t: t, bin: j.bin, cmd: &exec.Cmd{Process: cp}}
	ctr := jumpTarget(t, cfx, off, cv)
	pm, cm := jumpMaps(t, j.pid()), jumpMaps(t, child)
	pIno, cIno := regionInode(pm, ptr), regionInode(cm, ctr)
	if pIno == "" || cIno == "" || pIno == cIno {
		t.Fatalf("parent's jmp to %#x (memfd inode %q), child's to %#x (%q): want each its own region\nparent: %q\nchild: %q",
			ptr, pIno, ctr, cIno, pm, cm)
	}
	t.Logf("parent's trampoline at %#x (memfd %s), child's at %#x (memfd %s); child maps %d trampoline regions", ptr, pIno, ctr, cIno, len(cm)/2)
	j.send("k")
	j.expect("child exit 0")
	j.batch(T, N)
	d.wantHits(P+"/j_func", 3*T*N+1) // and the child's first call
	j.finish()
}

// jumpTarget returns where the jmp of the jump site at vaddr (file offset
// off) of j leads.
func jumpTarget(t *testing.T, j *jproc, off uint64, vaddr string) uint64 {
	t.Helper()
	b := j.text(off, 5)
	va, err := strconv.ParseUint(strings.TrimPrefix(vaddr, "0x"), 16, 64)
	if b[0] != 0xe9 || err != nil {
		t.Fatalf("pid %d: % x at %s (%v), want a jmp rel32", j.pid(), b, vaddr, err)
	}
	return jmpDest(va, b)
}

// jmpDest is where the jmp rel32 b (5 bytes) at vaddr leads.
func jmpDest(vaddr uint64, b []byte) uint64 {
	rel := int32(uint32(b[1]) | uint32(b[2])<<8 | uint32(b[3])<<16 | uint32(b[4])<<24)
	return vaddr + 5 + uint64(int64(rel))
}

// regionInode returns the inode of the maps line (of jumpMaps) that holds
// addr ("" if none).
func regionInode(maps []string, addr uint64) string {
	for _, l := range maps {
		f := strings.Fields(l)
		var lo, hi uint64
		if _, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi); err == nil && addr >= lo && addr < hi {
			return f[4]
		}
	}
	return ""
}
