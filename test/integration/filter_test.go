package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestProcessFilter: a pid-filtered probe goes only into the process named
// (and the children it forks), a comm-filtered one only into processes of
// that command name. Two processes run the same inode (a hard link gives
// the second another command name): the one not selected keeps the file's
// text and no tracer, the selected one counts exactly.
func TestProcessFilter(t *testing.T) {
	d := startDaemon(t)
	bin := testfix.Glob(t)
	bin2 := filepath.Join(filepath.Dir(bin), "glob2") // same inode, comm "glob2"
	if err := os.Link(bin, bin2); err != nil {
		t.Fatal(err)
	}
	a, b := startGlob(t, bin), startGlob(t, bin2)
	fa := &fixture{t: t, path: bin, cmd: a.cmd}
	fb := &fixture{t: t, path: bin2, cmd: b.cmd}
	P := d.in(bin)
	one := testfix.SymOff(t, bin, "alpha_one")

	// pid=A: B is never attached; A and its fork child count.
	d.must(fmt.Sprintf("echo 'alpha_one pid=%d' > %s/probes", fa.pid(), P))
	if tp := fb.tracerPid(); tp != 0 {
		t.Fatalf("pid %d (not selected) is traced by %d", fb.pid(), tp)
	}
	fb.checkOriginal(one)
	if got := fa.text(one, 1)[0]; got != 0xcc && got != 0xe9 {
		t.Fatalf("selected pid %d: byte %#x at alpha_one, want the breakpoint or the jump site", fa.pid(), got)
	}
	// A process that execs the file now is not selected either: held at
	// its exec, it gets no breakpoint and is let go.
	c := startGlob(t, bin) // one round of calls, not counted
	fc := &fixture{t: t, path: bin, cmd: c.cmd}
	fc.waitUntraced()
	fc.checkOriginal(one)
	c.round()
	a.round()           // alpha_one once
	a.roundLine("fork") // once in a fork child, once in A
	b.round()           // not counted
	if got := d.hits(P + "/alpha_one"); got != 3 {
		t.Fatalf("alpha_one hits %d, want 3 (A twice, its fork child once; B and C none)", got)
	}
	st := d.must("cat " + P + "/alpha_one/status")
	if !strings.Contains(st, fmt.Sprintf("pid=%d ", fa.pid())) || strings.Contains(st, fmt.Sprintf("pid=%d ", fb.pid())) {
		t.Fatalf("status lists other than the selected pid:\n%s", st)
	}
	if tp := fb.tracerPid(); tp != 0 {
		t.Fatalf("pid %d (not selected) is traced by %d after the hits", fb.pid(), tp)
	}
	fb.checkOriginal(one)

	// One filter per file: an unfiltered probe beside it is refused.
	if r := d.sh("env echo alpha_two > " + P + "/probes"); r.code == 0 || !strings.Contains(r.out, "Invalid argument") {
		t.Fatalf("an unfiltered probe beside a filtered one: exit %d %q", r.code, r.out)
	}
	if last := lastLine(d.must("cat $M/.uprobefs/errors")); !strings.Contains(last, "share one filter") {
		t.Fatalf("error log: %q", last)
	}
	d.must("echo -alpha_one > " + P + "/probes")
	fa.waitUntraced()
	fa.checkOriginal(one)

	// comm=glob2 (with a pattern): only B.
	d.must("echo 'alpha_* comm=glob2' > " + P + "/probes")
	if tp := fa.tracerPid(); tp != 0 {
		t.Fatalf("pid %d (comm glob) is traced by %d under comm=glob2", fa.pid(), tp)
	}
	fa.checkOriginal(one)
	a.round()
	b.round()
	b.roundLine("fork") // the child has its parent's command name
	for sym, want := range map[string]uint64{"alpha_one": 3, "alpha_two": 6, "alpha_three": 9} {
		if got := d.hits(P + "/" + sym); got != want {
			t.Errorf("%s hits %d, want %d", sym, got, want)
		}
	}
	d.must("echo '-*' > " + P + "/probes")
	fb.waitUntraced()
	fb.checkOriginal(one)
	a.round()
	b.round()
}
