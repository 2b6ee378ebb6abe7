package proc

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestBatchInOneFunction (issue 11 item 14): a probe on every instruction
// of one function (push, mov, imul, lea, test, jcc, add, rip-relative load
// and store, call, pop, ret: slots and emulation side by side), registered
// in one batch while new processes exec the binary and run it, removed,
// again and again, with every CPU loaded by spinning threads. No process
// is harmed (each checks what the function computes and exits 0), and in
// the last round, registered before the processes start, every probe
// counts exactly.
func TestBatchInOneFunction(t *testing.T) {
	bin, other := treeBins(t)
	e := newFanEnv(t, Options{})
	var locs []string
	for off := uint64(0); ; {
		loc := fmt.Sprintf("mixed+%#x", off)
		_, plan := resolvePlan(t, bin, loc)
		locs = append(locs, loc)
		if plan.Class == "ret" {
			break
		}
		off += uint64(plan.Len)
	}
	if len(locs) != 14 {
		t.Fatalf("%d instructions in mixed, want 14: %v", len(locs), locs)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			for {
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	t.Cleanup(func() { close(stop); wg.Wait() })

	const rounds, procs, calls = 10, 20, 20
	spawn := func() *fixture {
		return startFixture(t, other, "spawn", fmt.Sprint(procs), "3", bin, fmt.Sprint(calls))
	}
	want := fmt.Sprintf("spawn %d bad 0 first 0\n", procs)
	for r := range rounds {
		f := spawn()
		var ps []*probe
		for _, loc := range locs {
			ps = append(ps, e.register(bin, loc))
		}
		out, code := f.Wait(120 * time.Second)
		if code != 0 || out != want {
			t.Fatalf("round %d: exit %d %q, want %q (probes %v)", r, code, out, want, ps[0].c.Hits())
		}
		for _, p := range ps {
			e.unregister(p)
		}
	}
	var ps []*probe
	for _, loc := range locs {
		ps = append(ps, e.register(bin, loc))
	}
	f := spawn()
	if out, code := f.Wait(120 * time.Second); code != 0 || out != want {
		t.Fatalf("last round: exit %d %q, want %q", code, out, want)
	}
	for i, p := range ps {
		n := procs * calls
		if locs[i] == "mixed+0x12" {
			n /= 2 // add $3: odd arguments only
		}
		if got := p.c.Hits(); got != uint64(n) {
			t.Errorf("%s: %d hits, want %d", locs[i], got, n)
		}
	}
}
