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
			got := slices.Clone(g.of[pid])
			slices.Sort(got)
			if !slices.Equal(got, space) {
				t.Errorf("group of %d: %v, want %v", pid, got, space)
			}
		}
	}
	if n := len(g.of); n != 8 {
		t.Errorf("%d processes grouped, want 8: %v", n, g.of)
	}
}
