package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestNonRootMount: a throwaway unprivileged user mounts uprobefs itself
// (through fuse3's fusermount3: the Makefile installs it), probes its own
// process (no fanotify without CAP_SYS_ADMIN: the /proc rescan finds it),
// counts hits, and unmounts with "uprobefs umount": a clean shutdown, the
// process restored and detached.
func TestNonRootMount(t *testing.T) {
	needTool(t, "fusermount3", "fusermount3 missing: make prereq installs fuse3")
	uid, gid := testfix.User(t)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	bin := buildFixture(t)
	testfix.Reachable(t, bin)
	os.Chown(bin, uid, gid)
	fx := startFixture(t, bin, uid)
	d := startDaemonAs(t, cred)
	if r := d.shAs(uid, "echo tick > "+d.in(bin)+"/probes"); r.code != 0 {
		t.Fatalf("registering as the user: exit %d %q\n%s", r.code, r.out, d.log.String())
	}
	// Only the user reaches its mount (root too is refused by FUSE).
	d.waitHitsAboveAs(uid, d.in(bin)+"/tick", 10)
	// Traced by the user's daemon (its tracer thread).
	if tp := fx.tracerPid(); tp == 0 || !isDir(fmt.Sprintf("/proc/%d/task/%d", d.cmd.Process.Pid, tp)) {
		t.Errorf("fixture traced by %d, not a thread of the user's daemon %d", tp, d.cmd.Process.Pid)
	}
	c := exec.Command(uprobefsBin, "umount", d.mnt)
	c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := c.CombinedOutput(); err != nil {
		t.Fatalf("uprobefs umount as the user: %v %s", err, out)
	}
	if code := d.wait(); code != 0 || !strings.Contains(d.log.String(), "clean shutdown") {
		t.Fatalf("exit %d\n%s", code, d.log.String())
	}
	fx.waitUntraced()
	fx.checkOriginal(testfix.SymOff(t, bin, "tick"))
	fx.waitBeats(3)
}

func isDir(p string) bool { st, err := os.Stat(p); return err == nil && st.IsDir() }
