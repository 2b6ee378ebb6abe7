package integration

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestContainerPath: a process in its own mount namespace (unshare -m)
// runs, under the path P, a file bind-mounted over P there: another inode
// than P's outside. A probe written through <mount>/proc/PID/root/P
// reaches it (that path resolves in the process's namespace, by the inode
// it runs), while a probe on P outside does not.
func TestContainerPath(t *testing.T) {
	needTool(t, "unshare", "unshare (util-linux) missing")
	d := startDaemon(t)
	inside := buildFixture(t)  // the file the "container" runs
	outside := buildFixture(t) // another inode at the path it runs it as
	p := filepath.Join(filepath.Dir(outside), "app")
	if out, err := exec.Command("cp", outside, p).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", "mount --bind "+inside+" "+p+" && exec "+p)
	fx := startFixtureCmd(t, p, cmd)
	fx.path = "" // (its maps show P, whose inode outside is not the one it runs)

	// Outside, P is another file: its probe reaches nothing.
	d.must("echo tick > " + d.in(p) + "/probes")
	fx.waitBeats(5)
	if h := d.hits(d.in(p) + "/tick"); h != 0 || fx.tracerPid() != 0 {
		t.Fatalf("the probe on P outside: %d hits, TracerPid %d; want 0, 0", h, fx.tracerPid())
	}
	d.must("rmdir " + d.in(p) + "/tick")

	// Through the process's root: its own inode.
	in := d.in("/proc/" + strconv.Itoa(fx.pid()) + "/root" + p)
	d.must("echo tick > " + in + "/probes")
	d.waitHitsAbove(in+"/tick", 5)
	if fx.tracerPid() == 0 {
		t.Fatal("the probe through /proc/PID/root did not attach the process")
	}
	list := d.must("cat $M/.uprobefs/probes")
	if !strings.Contains(list, "tick") {
		t.Fatalf("control listing: %q", list)
	}
	// The same inode as the file bind-mounted inside.
	if h := d.hits(d.in(inside) + "/tick"); h == 0 {
		t.Fatalf("the probe is not on the inode of %s (its hits through that path: %d)", inside, h)
	}
	d.must("rmdir " + in + "/tick")
	fx.waitUntraced()
}
