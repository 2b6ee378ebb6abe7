package proc

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/objfile"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/procfs"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// env is an engine and a world for one test, closed in t.Cleanup.
type env struct {
	t       testing.TB
	eng     *probes.Engine
	inodes  *rmap.Inodes
	w       *World
	watched map[rmap.InodeKey]bool
}

func newEnv(t testing.TB, o Options) *env {
	t.Helper()
	if o.Log == nil {
		o.Log = func(f string, a ...any) { t.Logf("world: "+f, a...) }
	}
	e := &env{t: t, eng: probes.NewEngine(EngineOptions()), inodes: &rmap.Inodes{}, watched: map[rmap.InodeKey]bool{}}
	w, err := NewWorld(e.eng, e.inodes, o)
	if err != nil {
		t.Fatal(err)
	}
	e.w = w
	// Cleanups run last-in first-out: fixtures started later are killed
	// (SIGKILL ends a traced process too) before the world is closed.
	t.Cleanup(func() {
		if err := e.w.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

// newFanEnv is newEnv for a test of processes that start after
// registration: it skips the test where fanotify is unavailable.
func newFanEnv(t testing.TB, o Options) *env {
	t.Helper()
	e := newEnv(t, o)
	if e.w.fan == nil {
		t.Skipf("fanotify unavailable: %v", e.w.fanErr)
	}
	return e
}

// probe is a registered probe.
type probe struct {
	c    *probes.Consumer
	in   *rmap.Inode
	off  uint64
	plan *install.Plan
}

func keyOf(t testing.TB, path string) rmap.InodeKey {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return rmap.InodeKey{Dev: st.Dev, Ino: st.Ino}
}

// resolvePlan resolves loc in the file path and analyzes the instruction
// there, as the Manager does.
func resolvePlan(t testing.TB, path, loc string) (uint64, *install.Plan) {
	t.Helper()
	f, err := objfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off, err := f.Resolve(loc)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := f.Analyze(off)
	if err != nil {
		t.Fatal(err)
	}
	return off, plan
}

// register watches bin (once) and registers a consumer at loc.
// watch has the world watch bin (once) and returns its inode.
func (e *env) watch(bin string) *rmap.Inode {
	e.t.Helper()
	k := keyOf(e.t, bin)
	in := e.inodes.Get(k)
	if !e.watched[k] {
		if err := e.w.Watch(in, bin); err != nil {
			e.t.Fatal(err)
		}
		e.watched[k] = true
	}
	return in
}

func (e *env) register(bin, loc string) *probe {
	t := e.t
	t.Helper()
	off, plan := resolvePlan(t, bin, loc)
	in := e.watch(bin)
	p := &probe{c: &probes.Consumer{Name: loc}, in: in, off: off, plan: plan}
	if err := e.eng.Register(in, off, plan.Insn, plan, p.c); err != nil {
		t.Fatalf("register %s: %v", loc, err)
	}
	return p
}

func (e *env) unregister(p *probe) {
	e.t.Helper()
	if err := e.eng.Unregister(p.in, p.off, p.c); err != nil {
		e.t.Fatalf("unregister: %v", err)
	}
}

// checksum runs bin unprobed (through the relay) and returns its output.
func checksum(t *testing.T, bin string, args ...string) string {
	t.Helper()
	f := startFixture(t, bin, args...)
	f.Go()
	out, code := f.Wait(60 * time.Second)
	if code != 0 {
		t.Fatalf("unprobed %v: exit %d: %s", args, code, out)
	}
	return out
}

// textEqualsFile checks that the executable mappings of bin in pid hold
// the file's bytes.
func textEqualsFile(t *testing.T, pid int, bin string) {
	t.Helper()
	file, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	k := keyOf(t, bin)
	ms, err := procfs.ReadMaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	n := 0
	for _, m := range ms {
		if m.Dev != k.Dev || m.Ino != k.Ino || !m.Exec() {
			continue
		}
		size := m.End - m.Start
		if m.Off+size > uint64(len(file)) {
			size = uint64(len(file)) - m.Off
		}
		b := make([]byte, size)
		if _, err := mem.ReadAt(b, int64(m.Start)); err != nil {
			t.Fatalf("pid %d: read %#x: %v", pid, m.Start, err)
		}
		if !bytes.Equal(b, file[m.Off:m.Off+size]) {
			for i := range b {
				if b[i] != file[m.Off+uint64(i)] {
					t.Fatalf("pid %d: text differs from the file at offset %#x: %#x != %#x", pid, m.Off+uint64(i), b[i], file[m.Off+uint64(i)])
				}
			}
		}
		n++
	}
	if n == 0 {
		t.Fatalf("pid %d: no executable mapping of %s", pid, bin)
	}
}

// workBin builds the work fixture and returns a private copy.
func workBin(t *testing.T) string {
	return testfix.Copy(t, buildOnce(t, "work", "-O2", "-pthread"))
}

const nHits = 100000

// TestExactCounts: probes on emulated and slotted instructions of every
// kind count exactly N hits each, and the program's checksum is unchanged:
// on the trap path (NoJump), and with jump sites where they can be (the
// trampolines relocate the same instruction kinds).
func TestExactCounts(t *testing.T) {
	t.Parallel() // with TestThreads: two tracers keep both CPUs busier
	for _, m := range []struct {
		name string
		o    Options
	}{{"trap", Options{NoJump: true}}, {"jump", Options{}}} {
		t.Run(m.name, func(t *testing.T) { exactCounts(t, m.o) })
	}
}

func exactCounts(t *testing.T, o Options) {
	bin := workBin(t)
	n := fmt.Sprint(nHits)
	cases := []struct {
		funcs string
		locs  []string
	}{
		{"ep", []string{"f_endbr", "f_push"}},             // emulated: endbr64, push %rbp
		{"ls", []string{"f_load", "f_store"}},             // slot: rip-relative load, store
		{"cjk", []string{"f_call", "f_jmp", "f_jcc+0x4"}}, // emulated: call, jmp, jcc
		{"i", []string{"f_imul"}},                         // slot: imul
	}
	var want []string
	for _, c := range cases {
		want = append(want, checksum(t, bin, n, "1", c.funcs))
	}
	e := newEnv(t, o)
	var fs []*fixture
	for _, c := range cases {
		fs = append(fs, startFixture(t, bin, n, "1", c.funcs))
	}
	var ps [][]*probe
	for _, c := range cases {
		var pp []*probe
		for _, loc := range c.locs {
			pp = append(pp, e.register(bin, loc))
		}
		ps = append(ps, pp)
	}
	kinds := map[string]string{}
	for i, c := range cases {
		for j, loc := range c.locs {
			kinds[loc] = ps[i][j].plan.Kind.String() + "/" + ps[i][j].plan.Class
		}
	}
	t.Logf("kinds: %v", kinds)
	start := time.Now()
	outs, codes := runAll(t, fs, 120*time.Second)
	el := time.Since(start)
	total := 0
	for i, c := range cases {
		if codes[i] != 0 || outs[i] != want[i] {
			t.Errorf("%s: exit %d output %q, want 0 %q", c.funcs, codes[i], outs[i], want[i])
		}
		for _, p := range ps[i] {
			total++
			if got := p.c.Hits(); got != nhits64 {
				t.Errorf("%s (%s): %d hits, want %d", p.c.Name, kinds[p.c.Name], got, nHits)
			}
		}
	}
	t.Logf("%d probes x %d hits in %v (%.1f µs/hit)", total, nHits, el, float64(el.Microseconds())/float64(total*nHits))
	if s := e.w.Stats(); s.Errors != 0 {
		t.Errorf("stats: %+v", s)
	}
}

const nhits64 = uint64(nHits)
