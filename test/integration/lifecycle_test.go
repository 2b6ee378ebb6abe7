package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// fdsTo returns the descriptors of process pid whose link is target or
// "target (deleted)".
func fdsTo(t *testing.T, pid int, target string) []string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil && (l == target || l == target+" (deleted)") {
			out = append(out, e.Name()+" -> "+l)
		}
	}
	return out
}

// TestProbedFileRemoved: after rm of the probed file, or a rename of
// another file over its path, the probes stay (listed, counting) but the
// path no longer reaches them; .uprobefs/files and status say the file is
// gone, and .uprobefs/inodes/DEV:INO lists them and removes them (rmdir,
// -NAME). Removing the last one detaches the process and closes the
// daemon's descriptor of the deleted inode. Before, such probes could not
// be removed at all and the daemon held the inode until unmount.
func TestProbedFileRemoved(t *testing.T) {
	for _, how := range []string{"rm", "rename over"} {
		t.Run(strings.ReplaceAll(how, " ", "_"), func(t *testing.T) {
			d := startDaemon(t)
			bin := buildFixture(t)
			tick := testfix.SymOff(t, bin, "tick")
			fx := startFixture(t, bin, -1)
			P := d.in(bin)
			d.must("echo tick > " + P + "/probes; echo tock > " + P + "/probes")
			h := d.waitHitsAbove(P+"/tick", 0)
			K := strings.TrimSpace(d.must("stat -c %d:%i " + bin))
			dpid := d.cmd.Process.Pid
			if fds := fdsTo(t, dpid, bin); len(fds) == 0 {
				t.Fatalf("the daemon holds no descriptor of %s: nothing to check", bin)
			}

			state := "gone"
			if how == "rm" {
				d.must("rm " + bin)
				if r := d.sh("ls " + P); r.code == 0 {
					t.Fatalf("ls of the removed file's directory: %s", r.out)
				}
			} else {
				state = "replaced"
				d.must(fmt.Sprintf("printf 'new version\\n' > %s.new && mv %s.new %s", bin, bin, bin))
				if got := d.must("ls " + P); got != "probes\n" {
					t.Fatalf("ls of the new file = %q", got)
				}
			}
			if err := syscall.Rmdir(P + "/tick"); err != syscall.ENOENT {
				t.Fatalf("rmdir through the old path: %v, want ENOENT", err)
			}
			if err := writeFile(P+"/probes", "-tick\n"); !errors.Is(err, syscall.ENOENT) {
				t.Fatalf("-tick through the old path: %v, want ENOENT", err)
			}
			if got := d.must("cat $M/.uprobefs/probes"); strings.Count(got, "\n") != 2 || !strings.Contains(got, bin+" tick tick ") {
				t.Fatalf(".uprobefs/probes = %q", got)
			}
			if got, want := d.must("cat $M/.uprobefs/files"), K+" "+state+" "+bin+"\n"; got != want {
				t.Fatalf(".uprobefs/files = %q, want %q", got, want)
			}
			if got := d.must("ls $M/.uprobefs/inodes"); got != K+"\n" {
				t.Fatalf("ls .uprobefs/inodes = %q", got)
			}
			I := d.mnt + "/.uprobefs/inodes/" + K
			if got := d.must("ls " + I); got != "probes\ntick\ntock\n" {
				t.Fatalf("ls %s = %q", I, got)
			}
			if got := d.must("cat " + I + "/probes"); !strings.Contains(got, fmt.Sprintf("tick tick %#x ", tick)) {
				t.Fatalf("inode probes = %q", got)
			}
			st := d.must("cat " + I + "/tick/status")
			first, rest, _ := strings.Cut(st, "\n")
			if !strings.HasPrefix(first, "file gone: "+bin+" ") || !strings.HasSuffix(first, "; this probe is .uprobefs/inodes/"+K+"/tick") ||
				!strings.HasPrefix(rest, fmt.Sprintf("pid=%d vaddr=", fx.pid())) || !isInstalled(strings.TrimSuffix(rest, "\n")) {
				t.Fatalf("status = %q", st)
			}
			// Still counting, reached by the inode.
			d.waitHitsAbove(I+"/tick", h)

			// Removal: -NAME into the inode's probes, then rmdir.
			if err := writeFile(I+"/probes", "tick2=tick\n"); !errors.Is(err, syscall.EINVAL) {
				t.Fatalf("registering through the inode: %v, want EINVAL", err)
			}
			d.must("echo -tock > " + I + "/probes")
			if fds := fdsTo(t, dpid, bin); len(fds) == 0 {
				t.Fatal("descriptor closed with a probe left")
			}
			d.must("rmdir " + I + "/tick")
			if got := d.must("cat $M/.uprobefs/probes $M/.uprobefs/files; ls $M/.uprobefs/inodes"); got != "" {
				t.Fatalf("left after removing every probe: %q", got)
			}
			if _, err := os.Stat(I); !errors.Is(err, syscall.ENOENT) {
				t.Fatalf("the inode's directory after its last probe: %v, want ENOENT", err)
			}
			if fds := fdsTo(t, dpid, bin); len(fds) != 0 {
				t.Fatalf("the daemon still holds the old file: %v", fds)
			}
			fx.waitUntraced()
			fx.drainBeats()
			fx.waitBeats(2)
		})
	}
}

// writeFile writes s to the existing file path in one write(2).
func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(s))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// TestRemovedFileProbesOtherUser: with --allow-other, another user reads
// an inode's probes listing (.uprobefs/inodes/DEV:INO/probes) of a file
// that was removed: it sees only its own probes, never root's (their
// symbol offsets), since the file's permissions cannot be asked any more.
func TestRemovedFileProbesOtherUser(t *testing.T) {
	uid, _ := testfix.User(t)
	d := startDaemon(t, "--allow-other")
	bin := buildFixture(t)
	testfix.Reachable(t, bin)
	fx := startFixture(t, bin, -1)
	K := strings.TrimSpace(d.must("stat -c %d:%i " + bin))
	d.must("echo tick > " + d.in(bin) + "/probes")
	fx.waitBeats(1)
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	list := "$M/.uprobefs/inodes/" + K + "/probes"
	if out := d.must("cat " + list); !strings.Contains(out, "tick ") {
		t.Fatalf("root's listing: %q", out)
	}
	if r := d.shAs(uid, "cat "+list); r.code != 0 || r.out != "" {
		t.Fatalf("another user's listing: exit %d %q, want it empty", r.code, r.out)
	}
}
