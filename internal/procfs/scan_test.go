package procfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// copySleep copies /bin/sleep into a private directory (a new inode) and
// returns its path and identity.
func copySleep(t *testing.T, name string) (string, FileID) {
	t.Helper()
	b, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Skip("no /bin/sleep")
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return p, FileID{Dev: st.Dev, Ino: st.Ino}
}

// TestPidsMappingMaps: two processes of a private copy of sleep and one of
// another copy; the scan finds exactly the two for the first copy's
// identity, with maps that map it, by PROCMAP_QUERY and by the maps text
// alike.
func TestPidsMappingMaps(t *testing.T) {
	a, ka := copySleep(t, "a")
	b, _ := copySleep(t, "b")
	var want []int
	for _, bin := range []string{a, a, b} {
		c := exec.Command(bin, "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		if bin == a {
			want = append(want, c.Process.Pid)
		}
	}
	// The execs are done once each maps its binary: poll (no event).
	for _, via := range []string{"query", "text"} {
		noQuery.Store(via == "text")
		var got []int
		var maps map[int][]Mapping
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			var err error
			if got, maps, err = PidsMappingMaps([]FileID{ka}, nil); err != nil {
				t.Fatal(err)
			}
			if len(got) >= len(want) {
				break
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: pids %v, want %v", via, got, want)
		}
		for _, pid := range want {
			if !slices.ContainsFunc(maps[pid], func(m Mapping) bool { return m.Dev == ka.Dev && m.Ino == ka.Ino }) {
				t.Errorf("%s: the maps of %d do not map the file: %v", via, pid, maps[pid])
			}
		}
	}
	noQuery.Store(false)
}
