package integration

import (
	"bufio"
	"bytes"
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

// guardProc is a running guard fixture (testdata/guard.c).
type guardProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startGuard(t *testing.T, bin, mode string) *guardProc {
	t.Helper()
	g := &guardProc{cmd: exec.Command(bin, mode)}
	var r io.Reader
	g.stdin, r = testfix.StartPiped(t, g.cmd)
	g.out = bufio.NewReader(r)
	if b, err := g.out.ReadByte(); err != nil || b != '.' {
		t.Fatalf("guard %s: no first heartbeat: %v", mode, err)
	}
	return g
}

// text is the byte of bin's text at file offset off in g (fixture.text).
func (g *guardProc) text(t *testing.T, bin string, off uint64) []byte {
	return (&fixture{t: t, path: bin, cmd: g.cmd}).text(off, 1)
}

// alive reports whether the process still runs (not a zombie).
func (g *guardProc) alive() bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", g.cmd.Process.Pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// TestDaemonKilled (issue 14 item 7): SIGKILL of the daemon while
// processes hit a probe at full speed and others hold it idle. The
// guardian restores every byte and unmounts the dead mount: every idle
// process later runs the probed function and exits 0 with its output; the
// busy processes still alive keep running on restored text. The figures
// (busy survivors, time from the kill to the unmount) go to the log.
func TestDaemonKilled(t *testing.T) {
	// On the trap path: the int3s are what the guardian must restore (a
	// jump site is left to run on: TestJumpDaemonKilled).
	d := startDaemon(t, "--trap")
	bin := testfix.Copy(t, testfix.CC(t, "testdata/guard.c", "-O2"))
	const nBusy, nIdle = 3, 3
	var busy, idle []*guardProc
	for range nBusy {
		busy = append(busy, startGuard(t, bin, "busy"))
	}
	for range nIdle {
		idle = append(idle, startGuard(t, bin, "idle"))
	}
	d.must("echo hot > " + d.in(bin) + "/probes")
	d.waitHitsAbove(d.in(bin)+"/hot", 2000)
	var off uint64
	for _, f := range strings.Fields(d.must("cat " + d.in(bin) + "/probes")) {
		if strings.HasPrefix(f, "0x") {
			off, _ = strconv.ParseUint(f[2:], 16, 64)
		}
	}
	if off == 0 {
		t.Fatal("no offset in the probes listing")
	}
	unmounted := d.killForGuardian()
	want := fileBytes(t, bin, off, 1)
	for i, g := range idle {
		if got := g.text(t, bin, off); !bytes.Equal(got, want) {
			t.Errorf("idle %d: text at %#x is % x, file % x", i, off, got, want)
		}
		io.WriteString(g.stdin, "go\n")
		line, _ := g.out.ReadString('\n')
		if err := g.cmd.Wait(); err != nil || !strings.HasPrefix(line, "idle 1000 sum ") {
			t.Errorf("idle %d after the daemon's death: %q, %v", i, line, err)
		}
	}
	survivors := 0
	for i, g := range busy {
		// A few more heartbeats: hot() runs 256 times per beat.
		for range 4 {
			g.out.ReadByte()
		}
		if !g.alive() {
			t.Logf("busy %d died (stopped in a hit when the tracer died: the kernel released it with SIGTRAP pending)", i)
			continue
		}
		survivors++
		if got := g.text(t, bin, off); !bytes.Equal(got, want) {
			t.Errorf("busy %d: text at %#x is % x, file % x", i, off, got, want)
		}
	}
	t.Logf("daemon SIGKILL: %d of %d idle and %d of %d busy processes alive; dead mount unmounted %v after the kill",
		nIdle, nIdle, survivors, nBusy, unmounted.Round(time.Microsecond))
	d.logGuardian()
}
