package manager

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/uprobefs/uprobefs/core/rmap"
)

// TestRemovedFileProbes: after rm, or a rename over the probed path, the
// probes stay, Files and GoneLine say so, removal through the path is
// ENOENT and through the inode works, and the last one unwatches.
func TestRemovedFileProbes(t *testing.T) {
	for _, how := range []string{"rm", "rename over"} {
		t.Run(how, func(t *testing.T) {
			m, w, path, key := newMgr(t)
			c := Caller{}
			if err := m.Write(c, path, []byte("tick\ntock\nother=tick\n")); err != nil {
				t.Fatal(err)
			}
			if fs := m.Files(); len(fs) != 1 || fs[0].Line() != InodeName(key)+" present "+path+"\n" {
				t.Fatalf("files = %+v", fs)
			}
			if g := m.Probe(key, "tick").GoneLine(".uprobefs/inodes"); g != "" {
				t.Fatalf("gone line of a present file: %q", g)
			}
			state, what := "gone", "no longer exists"
			if how == "rm" {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else {
				state, what = "replaced", "names another file now"
				other := filepath.Join(t.TempDir(), "new")
				if err := os.WriteFile(other, []byte("new version"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(other, path); err != nil {
					t.Fatal(err)
				}
			}
			if fs := m.Files(); len(fs) != 1 || fs[0].Line() != InodeName(key)+" "+state+" "+path+"\n" || fs[0].Probes != 3 {
				t.Fatalf("files = %+v", fs)
			}
			want := "file gone: " + path + " " + what + "; this probe is .uprobefs/inodes/" + InodeName(key) + "/tick\n"
			if g := m.Probe(key, "tick").GoneLine(".uprobefs/inodes"); g != want {
				t.Fatalf("gone line %q, want %q", g, want)
			}
			if err := m.Remove(c, path, "tick"); !errnoIs(err, syscall.ENOENT) && !errnoIs(err, syscall.ENOEXEC) {
				t.Fatalf("remove through the path: %v", err)
			}
			if m.Probe(key, "tick") == nil {
				t.Fatal("removal through the path removed the old file's probe")
			}
			// Through the inode: registering is refused, all or nothing.
			if err := m.WriteInode(c, key, []byte("-tick\nnew=tick\n")); !errnoIs(err, syscall.EINVAL) || m.Probe(key, "tick") == nil {
				t.Fatalf("add through the inode: %v", err)
			}
			if err := m.WriteInode(c, key, []byte("-tick\n-nosuch\n")); !errnoIs(err, syscall.ENOENT) || m.Probe(key, "tick") == nil {
				t.Fatalf("batch with an unknown name: %v", err)
			}
			if err := m.RemoveInode(Caller{Uid: 1000}, key, "tick"); !errnoIs(err, syscall.EPERM) {
				t.Fatalf("another user's probe: %v", err)
			}
			if err := m.WriteInode(c, key, []byte("-tick\n-:other\n")); err != nil {
				t.Fatal(err)
			}
			if got := names(m.Probes(key)); got != "tock@tock" {
				t.Fatalf("probes left %q", got)
			}
			if calls := w.Calls(); len(calls) != 1 {
				t.Fatalf("unwatched with a probe left: %v", calls)
			}
			if err := m.RemoveInode(c, key, "tock"); err != nil {
				t.Fatal(err)
			}
			if calls := w.Calls(); len(calls) != 2 || !strings.HasPrefix(calls[1], "unwatch ") {
				t.Fatalf("world calls = %v", calls)
			}
			if len(m.Files()) != 0 || len(m.All()) != 0 {
				t.Fatalf("left: %v %v", m.Files(), names(m.All()))
			}
			if err := m.RemoveInode(c, key, "tock"); !errnoIs(err, syscall.ENOENT) {
				t.Fatalf("remove from an inode without probes: %v", err)
			}
			if n := len(m.Errors()); n != 5 {
				t.Errorf("%d refusals logged, want 5", n)
			}
		})
	}
}

func TestInodeName(t *testing.T) {
	k := rmap.InodeKey{Dev: 2049, Ino: 131075}
	if s := InodeName(k); s != "2049:131075" {
		t.Fatal(s)
	}
	if got, ok := ParseInodeName("2049:131075"); !ok || got != k {
		t.Fatal(got, ok)
	}
	// The path is escaped: one file, one line.
	if got, want := (ProbedFile{Key: k, Path: "/tmp/a b\nc", State: FileGone}).Line(), "2049:131075 gone /tmp/a\\040b\\012c\n"; got != want {
		t.Errorf("line %q, want %q", got, want)
	}
	for _, bad := range []string{"", "2049", ":1", "1:", "01:2", "1:+2", "1:2:3", "a:b", "-1:2", "1:18446744073709551616"} {
		if _, ok := ParseInodeName(bad); ok {
			t.Errorf("ParseInodeName(%q) accepted", bad)
		}
	}
}
