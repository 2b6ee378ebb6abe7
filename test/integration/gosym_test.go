package integration

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestGoPackagePathSymbols: a real Go program (built by the test) is probed
// by its package-path symbols in the quoted form; both probes count, the
// listing and status are one line per entry, and removing them restores
// the text and detaches the process, which keeps running.
func TestGoPackagePathSymbols(t *testing.T) {
	d, P, fx := startFixtureRig(t, testfix.GoTarget(t))
	bin := fx.path
	tick, tock := testfix.SymOff(t, bin, testfix.GoTick), testfix.SymOff(t, bin, testfix.GoTock)
	in := `"` + testfix.GoTick + `"` + "\n" + `tk="` + testfix.GoTock + `"` + "\n"
	if err := os.WriteFile(P+"/probes", []byte(in), 0); err != nil {
		t.Fatalf("write %q: %v\n%s", in, err, d.must("cat $M/.uprobefs/errors"))
	}
	h := d.waitHitsAbove(P+"/pkg.Tick", 0)
	d.waitHitsAbove(P+"/tk", 0)
	d.waitHitsAbove(P+"/pkg.Tick", h)

	ls := d.must("cat " + P + "/probes")
	want := []string{
		"pkg.Tick \"" + testfix.GoTick + "\" 0x" + strconv.FormatUint(tick, 16) + " ",
		"tk \"" + testfix.GoTock + "\" 0x" + strconv.FormatUint(tock, 16) + " ",
	}
	lines := strings.Split(strings.TrimSuffix(ls, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], want[0]) || !strings.HasPrefix(lines[1], want[1]) {
		t.Fatalf("probes listing:\n%s\nwant lines starting\n%s", ls, strings.Join(want, "\n"))
	}
	if st := d.must("cat " + P + "/pkg.Tick/status"); !strings.HasPrefix(st, "pid="+strconv.Itoa(fx.pid())+" ") || !isInstalled(strings.TrimSuffix(st, "\n")) || strings.Count(st, "\n") != 1 {
		t.Fatalf("status = %q", st)
	}

	d.must("rmdir " + P + "/pkg.Tick")
	if err := os.WriteFile(P+"/probes", []byte("-tk\n"), 0); err != nil {
		t.Fatal(err)
	}
	fx.waitUntraced()
	fx.checkOriginal(tick)
	fx.checkOriginal(tock)
	fx.drainBeats()
	fx.waitBeats(3)
}
