package integration

import (
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// globProc is a running glob fixture (internal/testfix/testdata/glob.c) in
// its stdin mode: each line written calls alpha_one once, alpha_two twice,
// alpha_three 3 times, beta_one 4 times, many_7 5 times, then it answers
// "ok".
type globProc struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out chan string
}

func startGlob(t *testing.T, path string) *globProc {
	t.Helper()
	g := &globProc{t: t, cmd: exec.Command(path)}
	g.in, g.out = startLines(t, g.cmd, 16)
	g.round() // running, its text mapped and its calls done once before any probe
	return g
}

// round has the fixture make one round of calls and waits for its "ok".
func (g *globProc) round() { g.t.Helper(); g.roundLine("go") }

// roundLine sends line ("fork": a child makes the calls too) and waits for
// the "ok".
func (g *globProc) roundLine(line string) {
	g.t.Helper()
	if _, err := io.WriteString(g.in, line+"\n"); err != nil {
		g.t.Fatal(err)
	}
	select {
	case line, ok := <-g.out:
		if !ok || line != "ok" {
			g.t.Fatalf("glob fixture answered %q (open %v)", line, ok)
		}
	case <-time.After(15 * time.Second):
		g.t.Fatal("glob fixture did not answer")
	}
}

// TestWildcard: "alpha_*" written to a real mount registers exactly the
// matching functions of the fixture, and each counts its calls exactly;
// "-alpha_*" removes them all in one write and the process is left with its
// original text, untraced.
func TestWildcard(t *testing.T) {
	d := startDaemon(t)
	bin := testfix.Glob(t)
	g := startGlob(t, bin)
	fx := &fixture{t: t, path: bin, cmd: g.cmd}
	P := d.in(bin)

	d.must("echo 'alpha_*' > " + P + "/probes")
	if got, want := d.must("ls "+P), "alpha_one\nalpha_three\nalpha_two\nprobes\n"; got != want {
		t.Fatalf("ls after alpha_* = %q, want %q", got, want)
	}
	list := d.must("cat " + P + "/probes")
	for _, sym := range []string{"alpha_one", "alpha_two", "alpha_three"} {
		if want := fmt.Sprintf("%s %s %#x 0 ", sym, sym, testfix.SymOff(t, bin, sym)); !strings.Contains(list, want) {
			t.Errorf("listing lacks %q:\n%s", want, list)
		}
	}
	for range 2 {
		g.round()
	}
	for sym, want := range map[string]uint64{"alpha_one": 2, "alpha_two": 4, "alpha_three": 6} {
		if got := d.hits(P + "/" + sym); got != want {
			t.Errorf("%s hits %d, want %d", sym, got, want)
		}
	}
	fx.checkOriginal(testfix.SymOff(t, bin, "beta_one")) // not matched, not touched

	// NAME=PATTERN is refused with a reason.
	if r := d.sh("env echo 'x=beta_*' > " + P + "/probes"); r.code == 0 || !strings.Contains(r.out, "Invalid argument") {
		t.Fatalf("x=beta_*: exit %d %q", r.code, r.out)
	}
	if last := lastLine(d.must("cat $M/.uprobefs/errors")); !strings.Contains(last, "EINVAL") || !strings.Contains(last, "cannot be given with a pattern") {
		t.Fatalf("error log: %q", last)
	}

	d.must("echo '-alpha_*' > " + P + "/probes")
	if got := d.must("ls " + P); got != "probes\n" {
		t.Fatalf("ls after -alpha_* = %q", got)
	}
	fx.waitUntraced()
	for _, sym := range []string{"alpha_one", "alpha_two", "alpha_three"} {
		fx.checkOriginal(testfix.SymOff(t, bin, sym))
	}
	g.round() // still runs
}
