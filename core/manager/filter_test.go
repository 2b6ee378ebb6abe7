package manager

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/core/sim"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

func TestParseFilters(t *testing.T) {
	for in, want := range map[string]string{
		"tick pid=12":                     "{false  tick pid=12}",
		"tick\tpid=12 ":                   "{false  tick pid=12}",
		"x=tick pid=12,13 comm=srv":       "{false x tick pid=12,13 comm=srv}",
		"x = tick comm=srv pid=12":        "{false x tick pid=12 comm=srv}",
		"p:x tick comm=a,b":               "{false x tick comm=a,b}",
		"p tick pid=1":                    "{false  tick pid=1}",
		"alpha_* pid=5":                   "{false  alpha_* pid=5}",
		"pid=tick":                        "{false pid tick }", // a probe named pid
		"comm=0x4a0 comm=abcdefghijklmno": "{false comm 0x4a0 comm=abcdefghijklmno}",
	} {
		ops, err := ParseProbeLines(in)
		if err != nil || len(ops) != 1 {
			t.Errorf("ParseProbeLines(%q) = %v, %v", in, ops, err)
			continue
		}
		op := ops[0]
		if got := fmt.Sprintf("{%v %s %s %s}", op.Remove, op.Name, op.Location, op.Filter.String()); got != want {
			t.Errorf("ParseProbeLines(%q) = %s, want %s", in, got, want)
		}
	}
	wantParseRefusals(t, map[string]string{
		"tick pid=":                        "empty pid= filter",
		"tick pid=-1":                      "not a positive decimal number",
		"tick pid=0":                       "not a positive decimal number",
		"tick pid=+3":                      "not a positive decimal number",
		"tick pid=x":                       "not a positive decimal number",
		"tick pid=1,":                      "not a positive decimal number",
		"tick comm=abcdefghijklmnop":       "longer than 15 bytes",
		"tick comm=a,,b":                   "empty command name",
		"tick pid=1 pid=2":                 "pid= given twice",
		"tick comm=a comm=b":               "comm= given twice",
		"-x pid=5":                         "-NAME takes none",
		"tick pid=5 extra":                 `probe name "tick pid" contains`, // a filter comes last
		"x=alpha_* pid=5":                  "cannot be given with a pattern",
		"ok\ntick pid=1\ntick comm=a,,b\n": "line 3: ",
	})
}

// TestFilterSelects checks the predicate against real processes: a child
// of this test process descends from it, init does not; comm= compares the
// command name.
func TestFilterSelects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	child := exec.CommandContext(ctx, "sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	cpid, self := child.Process.Pid, os.Getpid()
	mine := &Filter{Pids: []int{self}}
	if !mine.selects(self) || !mine.selects(cpid) {
		t.Errorf("pid=%d does not select itself or its child %d", self, cpid)
	}
	if mine.selects(1) {
		t.Errorf("pid=%d selects init", self)
	}
	childOnly := &Filter{Pids: []int{cpid}}
	if !childOnly.selects(cpid) || childOnly.selects(self) {
		t.Errorf("pid=%d: selects child %v, self %v; want true, false", cpid, childOnly.selects(cpid), childOnly.selects(self))
	}
	// exec.Command starts sleep after a fork: wait until its comm is sleep.
	bySleep := &Filter{Comms: []string{"other", "sleep"}}
	deadline := time.Now().Add(10 * time.Second)
	for !bySleep.selects(cpid) {
		if time.Now().After(deadline) {
			t.Fatal("comm=other,sleep does not select sleep")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if bySleep.selects(self) {
		t.Error("comm=other,sleep selects the test")
	}
	both := &Filter{Pids: []int{self}, Comms: []string{"sleep"}}
	if !both.selects(cpid) || both.selects(self) {
		t.Error("pid= and comm= must both hold")
	}
	if (&Filter{Pids: []int{self}}).selects(1 << 30) {
		t.Error("a pid that does not exist is selected")
	}
}

// filterWorld is the simulated world with SetFilter recorded.
type filterWorld struct {
	*sim.Watcher
	mu    sync.Mutex
	calls []string
	last  func(int) bool
}

func (w *filterWorld) SetFilter(in *rmap.Inode, f func(int) bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, fmt.Sprintf("filter %v", f != nil))
	w.last = f
	return nil
}

func (w *filterWorld) filterCalls() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.calls, ",")
}

// TestFilterStaging: the probes of one file share one filter, handed to
// the world before the file's watch; a world without SetFilter refuses
// filters.
func TestFilterStaging(t *testing.T) {
	path := testfix.Target(t)
	var w *filterWorld
	m, _, key := newMgrOn(t, path, nil, func(sw *sim.Watcher) World {
		w = &filterWorld{Watcher: sw}
		return w
	})
	self := os.Getpid()
	f := fmt.Sprintf(" pid=%d", self)
	if err := m.Write(Root, path, []byte("a=tick pid=1\nb=tock pid=2\n")); !errnoIs(err, syscall.EINVAL) || !strings.Contains(err.Error(), "share one filter") {
		t.Fatalf("a batch mixing filters: %v, want EINVAL", err)
	}
	mustWrite(t, m, path, "a=tick"+f+"\n")
	if got := w.filterCalls(); got != "filter true" {
		t.Fatalf("SetFilter calls %q, want one with a filter", got)
	}
	w.mu.Lock()
	sel := w.last
	w.mu.Unlock()
	if !sel(self) || sel(1) {
		t.Fatalf("the world's filter: self %v, init %v; want true, false", sel(self), sel(1))
	}
	for in, reason := range map[string]string{
		"b=tock\n":                  "no process filter differs",
		"b=tock pid=1\n":            "the process filter pid=1 differs",
		"b=tock" + f + " comm=x\n":  "comm=x differs",
		"-a\nb=tock\n":              "its probes have the process filter" + f,
		"b=tock" + f + "\nc=tick\n": "no process filter differs",
	} {
		if err := m.Write(Root, path, []byte(in)); !errnoIs(err, syscall.EINVAL) || !strings.Contains(err.Error(), reason) {
			t.Errorf("write %q: %v, want EINVAL with %q", in, err, reason)
		}
	}
	mustWrite(t, m, path, "b=tock"+f+"\n")
	if got := names(m.Probes(key)); got != "a@tick b@tock" {
		t.Fatalf("probes %q", got)
	}
	// Emptied, the file takes another filter (or none) at its next watch.
	mustWrite(t, m, path, "-a\n-b\n")
	mustWrite(t, m, path, "tick\n")
	if got := w.filterCalls(); got != "filter true,filter true" {
		t.Fatalf("SetFilter calls %q", got)
	}
	w.mu.Lock()
	sel = w.last
	w.mu.Unlock()
	if !sel(self) || !sel(1) {
		t.Fatalf("the world's predicate of an unfiltered root probe: self %v, init %v; want every process", sel(self), sel(1))
	}

	// A world that cannot filter refuses filtered probes only.
	m2, _, path2, _ := newMgr(t)
	if err := m2.Write(Root, path2, []byte("tick pid=1\n")); !errnoIs(err, syscall.EOPNOTSUPP) || !strings.Contains(err.Error(), "cannot limit probes to processes") {
		t.Fatalf("a filter on a world without SetFilter: %v, want EOPNOTSUPP", err)
	}
	if err := m2.Write(Root, path2, []byte("tick\n")); err != nil {
		t.Fatal(err)
	}
}
