package proc

import (
	"slices"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/procfs"
)

// TestGroupByMM: two harm clonespin processes (each main + 3
// clone(CLONE_VM) children), two idle ones and a pid that has exited:
// groupByMM puts each address space's four processes in one group, leaves
// the others out, and is not confused by the dead pid.
func TestGroupByMM(t *testing.T) {
	bin := harmBin(t)
	var spaces [][]int
	var all []int
	for range 2 {
		f := startFixture(t, bin, "clonespin", "60000")
		f.Go()
		var kids []int
		for deadline := time.Now().Add(10 * time.Second); len(kids) < 3; {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d: children %v, want 3", f.Pid, kids)
			}
			kids, _ = procfs.Children(f.Pid, f.Pid)
			time.Sleep(time.Millisecond) // polled: no event for a child's creation
		}
		space := append([]int{f.Pid}, kids...)
		slices.Sort(space)
		spaces = append(spaces, space)
		all = append(all, space...)
	}
	for _, f := range startFixtures(t, 2, bin, "clonespin", "60000") {
		all = append(all, f.Pid) // not started: no children
	}
	gone := startFixture(t, bin, "clonevm", "1")
	gone.Go()
	if _, code := gone.Wait(30 * time.Second); code != 0 {
		t.Fatalf("clonevm exit %d", code)
	}
	all = append(all, gone.Pid)
	slices.Reverse(all)

	g := groupByMM(all)
	if g == nil {
		t.Fatal("groupByMM gave up")
	}
	for _, space := range spaces {
		for _, pid := range space {
			got := slices.Clone(g[pid])
			slices.Sort(got)
			if !slices.Equal(got, space) {
				t.Errorf("group of %d: %v, want %v", pid, got, space)
			}
		}
	}
	if n := len(g); n != 8 {
		t.Errorf("%d processes grouped, want 8: %v", n, g)
	}
}

// TestSameExec: the maps a scan read stand for a process's maps only while
// its executable file mappings are unchanged: sameExec says yes for the
// maps just read, and no for each kind of change (a mapping moved, cut,
// at another offset, missing, or one too many).
func TestSameExec(t *testing.T) {
	f := startFixture(t, harmBin(t), "clonespin", "1")
	ms, err := procfs.ReadMaps(f.Pid)
	if err != nil {
		t.Fatal(err)
	}
	q := openMapsQuery(f.Pid)
	defer q.close()
	if q.f == nil {
		t.Skip("no PROCMAP_QUERY: the maps are always read again")
	}
	if !q.sameExec(ms) {
		t.Fatalf("the maps just read are not the same:\n%v", ms)
	}
	ex := -1
	for i, m := range ms {
		if m.Exec() && m.Ino != 0 {
			ex = i
			break
		}
	}
	if ex < 0 {
		t.Fatalf("no executable file mapping in %v", ms)
	}
	changes := map[string]func([]procfs.Mapping) []procfs.Mapping{
		"moved":   func(m []procfs.Mapping) []procfs.Mapping { m[ex].Start += 4096; m[ex].End += 4096; return m },
		"cut":     func(m []procfs.Mapping) []procfs.Mapping { m[ex].End -= 4096; return m },
		"offset":  func(m []procfs.Mapping) []procfs.Mapping { m[ex].Off += 4096; return m },
		"inode":   func(m []procfs.Mapping) []procfs.Mapping { m[ex].Ino++; return m },
		"missing": func(m []procfs.Mapping) []procfs.Mapping { return slices.Delete(m, ex, ex+1) },
		"extra": func(m []procfs.Mapping) []procfs.Mapping {
			return append(m, procfs.Mapping{Start: 1 << 46, End: 1<<46 + 4096, Perms: "r-xp", Ino: m[ex].Ino, Dev: m[ex].Dev})
		},
	}
	for name, change := range changes {
		if q.sameExec(change(slices.Clone(ms))) {
			t.Errorf("%s: still the same", name)
		}
	}
}
