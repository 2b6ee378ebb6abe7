package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestCgroupFilter: a probe limited with cgroup= to a test cgroup (v2,
// created and removed by the test) goes only into the process moved into
// it (and counts it exactly); a process of the same binary outside stays
// untraced with the file's text; a cgroup that does not exist is EINVAL.
func TestCgroupFilter(t *testing.T) {
	roots, err := mountPoints("cgroup2")
	if err != nil || len(roots) == 0 {
		t.Fatalf("no cgroup v2 hierarchy mounted (cgroup2 in /proc/self/mountinfo): %v", err)
	}
	root := roots[0]
	cg := filepath.Join(root, fmt.Sprintf("uprobefs-test-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t)
	bin := testfix.Glob(t)
	in, out := startGlob(t, bin), startGlob(t, bin)
	t.Cleanup(func() {
		// Back to the root cgroup, then the test cgroup can go.
		os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(strconv.Itoa(in.cmd.Process.Pid)), 0)
		if err := os.Remove(cg); err != nil {
			t.Errorf("remove %s: %v", cg, err)
		}
	})
	if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(in.cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	fin := &fixture{t: t, path: bin, cmd: in.cmd}
	fout := &fixture{t: t, path: bin, cmd: out.cmd}
	P := d.in(bin)
	one := testfix.SymOff(t, bin, "alpha_one")

	if r := d.sh("env echo 'alpha_one cgroup=/no-such-cgroup-uprobefs' > " + P + "/probes"); r.code == 0 || !strings.Contains(r.out, "Invalid argument") {
		t.Fatalf("a cgroup that does not exist: exit %d %q", r.code, r.out)
	}
	d.must(fmt.Sprintf("echo 'alpha_one cgroup=%s' > %s/probes", cg, P))
	if tp := fout.tracerPid(); tp != 0 {
		t.Fatalf("pid %d (outside the cgroup) is traced by %d", fout.pid(), tp)
	}
	fout.checkOriginal(one)
	if got := fin.text(one, 1)[0]; got != 0xcc && got != 0xe9 {
		t.Fatalf("pid %d (in the cgroup): byte %#x at alpha_one, want the breakpoint or the jump site", fin.pid(), got)
	}
	in.round()
	in.round()
	out.round()
	if got := d.hits(P + "/alpha_one"); got != 2 {
		t.Fatalf("alpha_one hits %d, want 2 (the process in the cgroup, twice)", got)
	}
	if l := d.must("cat " + P + "/probes"); !strings.Contains(l, "alpha_one") {
		t.Fatalf("listing: %q", l)
	}
	d.must("echo -alpha_one > " + P + "/probes")
	fin.waitUntraced()
	fin.checkOriginal(one)
}
