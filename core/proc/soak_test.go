package proc

import (
	"flag"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var soakTime = flag.Duration("soak.time", 3*time.Minute, "how long TestSoak runs (when -run selects it)")

// soakSelected reports whether -test.run names the soak explicitly: it is
// not part of the default run.
func soakSelected() bool {
	f := flag.Lookup("test.run")
	return f != nil && strings.Contains(f.Value.String(), "Soak")
}

// TestSoak (opt-in: go test ./core/proc -run Soak [-soak.time 3m]) runs the
// harm, fault, return-probe and batch fixtures together, over and over, for -soak.time,
// while probes are registered and removed at random on their functions.
// Zero processes harmed: every run exits 0 with the output of its
// unprobed run. Exact counts: the probes registered for the whole soak
// count exactly the calls the runs made.
func TestSoak(t *testing.T) {
	if !soakSelected() {
		t.Skip("opt-in: go test -run Soak")
	}
	harm, fault, ret := harmBin(t), faultBin(t), retBin(t)
	tree, other := treeBins(t)
	e := newFanEnv(t, Options{})
	type job struct {
		bin   string
		args  []string
		stdin bool // waits for a go line
		want  string
		calls int64 // calls of the steady probe's function per run
	}
	jobs := [][]job{
		{{bin: other, args: []string{"spawn", "10", "3", tree, "20"}, want: "spawn 10 bad 0 first 0\n", calls: 200}},
		{{bin: fault, args: []string{"async", "2000"}, stdin: true, calls: 2000},
			{bin: fault, args: []string{"load", "100"}, stdin: true},
			{bin: fault, args: []string{"callind", "100"}, stdin: true},
			{bin: fault, args: []string{"popf", "100"}, stdin: true},
			{bin: fault, args: []string{"stackcall", "20"}, stdin: true},
			{bin: fault, args: []string{"calls", "100"}, stdin: true}},
		{{bin: ret, args: []string{"calls", "300"}, stdin: true},
			{bin: ret, args: []string{"recurse", "50"}, stdin: true},
			{bin: ret, args: []string{"longjmp", "100"}, stdin: true},
			{bin: ret, args: []string{"tail", "100"}, stdin: true},
			{bin: ret, args: []string{"fork", "20"}, stdin: true}},
		{{bin: harm, args: []string{"clonevm", "300"}, stdin: true},
			{bin: harm, args: []string{"vfork", "100"}, stdin: true},
			{bin: harm, args: []string{"blocktrap", "20"}, stdin: true},
			{bin: harm, args: []string{"ignored", "20"}, stdin: true}},
	}
	for _, js := range jobs {
		for i := range js {
			if js[i].want == "" {
				js[i].want = checksum(t, js[i].bin, js[i].args...)
			}
		}
	}
	steady := []*probe{e.register(tree, "mixed"), e.register(fault, "f_slot")}
	churnLocs := []struct {
		bin, loc string
		ret      bool // a return probe (uretprobe.go)
	}{
		{tree, "mixed+0x4", false}, {tree, "mixed+0x12", false}, {tree, "mixed+0x27", false}, {tree, "mixed+0x30", false},
		{fault, "f_load", false}, {fault, "f_callind", false}, {fault, "f_popf+9", false}, {fault, "f_stackcall+6", false},
		{fault, "f_calls+0x1", false}, {fault, "f_calls+0x1c", false}, {fault, "f_slot+4", false},
		{harm, "h_func", false}, {harm, "h_two", false},
		{ret, "leaf", true}, {ret, "rec", true}, {ret, "jumper", true}, {ret, "thrower", true},
		{ret, "tailer", true}, {ret, "forker", true}, {ret, "leaf", false},
	}
	var runs, harmed atomic.Int64
	var steadyWant [2]atomic.Int64
	deadline := time.Now().Add(*soakTime)
	var wg sync.WaitGroup
	for w, js := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; time.Now().Before(deadline); k++ {
				j := js[k%len(js)]
				f := startFixture(t, j.bin, j.args...)
				if j.stdin {
					f.Go()
				}
				out, code := f.Wait(120 * time.Second)
				runs.Add(1)
				if code != 0 || out != j.want {
					harmed.Add(1)
					t.Errorf("%v: exit %d %q, want 0 %q", j.args, code, out, j.want)
				}
				if w < 2 {
					steadyWant[w].Add(j.calls)
				}
			}
		}()
	}
	reg := map[int]*probe{}
	toggles := 0
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for time.Now().Before(deadline) {
		i := rng.Intn(len(churnLocs))
		if p := reg[i]; p != nil {
			e.unregister(p)
			delete(reg, i)
		} else if churnLocs[i].ret {
			reg[i] = e.registerRet(churnLocs[i].bin, churnLocs[i].loc, nil)
		} else {
			reg[i] = e.register(churnLocs[i].bin, churnLocs[i].loc)
		}
		toggles++
		time.Sleep(time.Duration(5+rng.Intn(50)) * time.Millisecond)
	}
	wg.Wait()
	for _, p := range reg {
		e.unregister(p)
	}
	var got [2]uint64
	for i, p := range steady {
		got[i] = p.c.Hits()
		if want := uint64(steadyWant[i].Load()); got[i] != want {
			t.Errorf("steady probe %d: %d hits, want %d", i, got[i], want)
		}
	}
	st := e.w.Stats()
	t.Logf("soak %v: %d runs, %d harmed, %d register/unregister toggles on %d churn probes; steady probes %d and %d hits (exact); world: %d hits, %d errors",
		*soakTime, runs.Load(), harmed.Load(), toggles, len(churnLocs), got[0], got[1], st.Hits, st.Errors)
}
