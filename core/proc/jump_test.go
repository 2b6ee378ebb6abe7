package proc

import (
	"fmt"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/probes"
)

// siteModes returns the SiteMode of every site of p.
func (e *env) siteModes(p *probe) []string {
	var modes []string
	e.eng.Sites(p.in, p.off, func(s probes.Site) bool {
		if s.Installed {
			modes = append(modes, e.w.SiteMode(s.MM, s.Vaddr))
		}
		return true
	})
	return modes
}

// awaitJumps waits (10 s at most) until every probe of ps has n installed
// sites, all jump sites.
func (e *env) awaitJumps(ps []*probe, n int) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var bad []string
		for _, p := range ps {
			modes := e.siteModes(p)
			if len(modes) != n {
				bad = append(bad, fmt.Sprintf("%s: %d sites", p.c.Name, len(modes)))
			}
			for _, m := range modes {
				if m != "jump" {
					bad = append(bad, p.c.Name+": "+m)
				}
			}
		}
		if len(bad) == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("not all jump sites after 10s: %v", bad)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestJumpSites: probes on instructions of every kind become jump sites in
// a process of 4 threads before it runs its work: the hits are counted
// exactly without a single trap, the checksum is unchanged, and after the
// probes are removed the text equals the file again.
func TestJumpSites(t *testing.T) {
	bin := workBin(t)
	const n, threads = 20000, 4
	funcs := "eplscjki"
	locs := []string{"f_endbr", "f_push", "f_load", "f_store", "f_call", "f_jmp", "f_imul"}
	want := checksum(t, bin, fmt.Sprint(n), fmt.Sprint(threads), funcs)
	e := newEnv(t, Options{})
	f := startFixture(t, bin, fmt.Sprint(n), fmt.Sprint(threads), funcs, "hold")
	var ps []*probe
	for _, loc := range locs {
		p := e.register(bin, loc)
		if p.plan.Jump == nil {
			t.Logf("%s: no jump plan: %s", loc, p.plan.NoJump)
			e.unregister(p)
			continue
		}
		ps = append(ps, p)
	}
	e.awaitJumps(ps, 1)
	traps := e.w.nHits.Load()
	lines := holdAll(t, []*fixture{f})
	if lines[0] != want {
		t.Errorf("output %q, want %q", lines[0], want)
	}
	for _, p := range ps {
		if got := p.c.Hits(); got != n*threads {
			t.Errorf("%s: %d hits, want %d", p.c.Name, got, n*threads)
		}
	}
	if d := e.w.nHits.Load() - traps; d != 0 {
		t.Errorf("%d traps during the work, want none", d)
	}
	for _, p := range ps {
		e.unregister(p)
	}
	textEqualsFile(t, f.Pid, bin)
	release(t, []*fixture{f})
}
