package integration

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// runRet runs the ret fixture (core/proc/testdata/ret.c) with args and
// waits for it, checking its exit status.
func runRet(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader("go\n")
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.Output(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("ret %v did not end", args)
	}
	if err != nil {
		t.Fatalf("ret %v: %v %s", args, err, out)
	}
	return string(out)
}

// startRetProbes starts a daemon and registers probes (one write of
// lines, without % or ': they are printf's format) on bin, made
// reachable for it; P is bin's directory in the mount.
func startRetProbes(t *testing.T, bin string, lines ...string) (d *daemon, P string) {
	t.Helper()
	d = startDaemon(t)
	testfix.Reachable(t, bin)
	P = d.in(bin)
	d.must("printf '" + strings.Join(lines, "\\n") + "\\n' > " + P + "/probes")
	return d, P
}

// wantStatus checks that the status of the probe at dir says want.
func (d *daemon) wantStatus(dir, want string) {
	d.t.Helper()
	if st := d.must("cat " + dir + "/status"); !strings.Contains(st, want) {
		d.t.Fatalf("status of %s: %q, want it to say %q", dir, st, want)
	}
}

// TestReturnProbeMount: "r:NAME FUNC $retval" through the mount: hits are
// the function's returns, each event has ret=0xCALLER dur=NS and the
// return value as tracefs prints it, "FUNC%return" names a return probe
// too, NAME/latency holds the durations in the right log2 buckets, an
// offset inside a function and a Go program are refused (EINVAL).
func TestReturnProbeMount(t *testing.T) {
	bin := testfix.Copy(t, testfix.CC(t, "../../core/proc/testdata/ret.c", "-O2"))
	d, P := startRetProbes(t, bin, "r:ret leaf v=$retval:s64")
	d.must("echo 'napper%return' > " + P + "/probes")
	if l := d.must("cat " + P + "/probes"); !strings.Contains(l, "ret leaf%return ") || !strings.Contains(l, "napper%return napper%return ") {
		t.Fatalf("listing: %q", l)
	}
	ev := make(chan result, 1)
	go func() { ev <- d.sh("timeout 30 head -n 5 " + P + "/ret/events") }()
	d.waitReaders(1)
	want := runRet(t, bin, "calls", "5")
	r := <-ev
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if r.code != 0 || len(lines) != 5 {
		t.Fatalf("events: %d %q", r.code, r.out)
	}
	for i, l := range lines {
		if !strings.Contains(l, " ret=0x") || !strings.Contains(l, " dur=") || !strings.HasSuffix(l, fmt.Sprintf(" v=%d", 2*i)) {
			t.Errorf("event %d: %q, want ret=, dur= and v=%d (leaf returns 2x)", i, l, 2*i)
		}
	}
	if want != "calls 5 sum 20\n" {
		t.Errorf("fixture output %q", want)
	}
	if h := d.hits(P + "/ret"); h != 5 {
		t.Errorf("hits %d, want the 5 returns", h)
	}

	runRet(t, bin, "sleep", "4")
	lat := d.must("cat " + P + "/napper%return/latency")
	// 1.1 ms in [1M, 2M) ns and 20 ms in [16M, 32M), or (the tracer's
	// own latency, under load) the buckets just above: none below, none
	// between.
	got := map[string]int{}
	for _, l := range strings.Split(lat, "\n") {
		if i := strings.Index(l, ")"); strings.HasPrefix(l, "[") && i > 0 {
			if f := strings.Fields(l[i+1:]); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				got[l[:i+1]] = n
			}
		}
	}
	short := got["[1M, 2M)"] + got["[2M, 4M)"] + got["[4M, 8M)"]
	long := got["[16M, 32M)"] + got["[32M, 64M)"]
	if short != 4 || long != 4 || got["[1M, 2M)"] == 0 || got["[16M, 32M)"] == 0 || !strings.Contains(lat, "count 8") {
		t.Errorf("latency: %d short, %d long (want 4 and 4, most in their own buckets):\n%s", short, long, lat)
	}

	for line, reason := range map[string]string{
		"r:mid leaf+7": "not the first instruction of a function",
		"r:x leaf %zz": "%zz",
	} {
		r := d.sh("env echo '" + line + "' > " + P + "/probes")
		if r.code == 0 || !strings.Contains(r.out, "Invalid argument") || !strings.Contains(lastLine(d.must("cat $M/.uprobefs/errors")), reason) {
			t.Errorf("%q: exit %d %q; log %q", line, r.code, r.out, lastLine(d.must("cat $M/.uprobefs/errors")))
		}
	}
}

// TestGoReturnProbe: a return probe on a Go function that recurses deeply
// enough to grow and copy its goroutines' stacks, on four goroutines and
// two threads. The program runs to the end with its output (a replaced
// return address would crash it), every return is counted, every return
// pairs with its entry (the latency count), and status says which mode.
func TestGoReturnProbe(t *testing.T) {
	bin := testfix.GoRec(t)
	d, P := startRetProbes(t, bin, "r:gr main.rec")
	d.wantStatus(P+"/gr", "return instructions (a Go program")
	const n = 10
	cmd := exec.Command(bin, fmt.Sprint(n))
	out, err := cmd.Output()
	want := fmt.Sprintf("gorec %d returns %d sum %d\n", n, 4*n*201, 4*n*100)
	if err != nil || string(out) != want {
		t.Fatalf("Go program under a return probe: %v %q, want %q", err, out, want)
	}
	if h := d.hits(P + "/gr"); h != 4*n*201 {
		t.Errorf("hits %d, want %d returns", h, 4*n*201)
	}
	if lat := d.must("cat " + P + "/gr/latency"); !strings.Contains(lat, fmt.Sprintf("count %d", 4*n*201)) {
		t.Errorf("latency (every return paired with its entry):\n%s", lat)
	}
}

// TestReturnProbeCxxExceptions: return probes on the functions of a C++
// program that exceptions unwind through. Replacing the return address
// (what the kernel's uretprobes do: the program then ends in
// std::terminate) would stop the unwinder, so there the return
// instructions are probed: the program's output is its unprobed one, and
// the returns counted are the calls that returned (the even i; the odd
// ones throw).
func TestReturnProbeCxxExceptions(t *testing.T) {
	bin := testfix.Copy(t, testfix.CXX(t, "testdata/exc.cc", "-O2"))
	d, P := startRetProbes(t, bin, "r:mid _Z6middlei", "r:thr _Z7throweri")
	d.wantStatus(P+"/mid", "C++ exception tables")
	const n = 100
	if got := runRet(t, bin, fmt.Sprint(n)); got != fmt.Sprintf("exc %d caught %d sum %d\n", n, n/2, n/2*(n/2-1)+n/2) {
		t.Fatalf("output %q", got)
	}
	for _, name := range []string{"mid", "thr"} {
		if h := d.hits(P + "/" + name); h != n/2 {
			t.Errorf("%s: %d returns, want %d", name, h, n/2)
		}
	}
}
