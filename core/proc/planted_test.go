//go:build planted

package proc

import (
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/lockdep"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestPlantedPokeWaitCaught: a breakpoint written with PTRACE_POKEDATA by a
// register walk (which holds the process's mmap_sem) must wait for the
// tracer as a poke request, which the tracer serves holding no lock.
// Planted as an ordinary request, the wait is one the tracer may answer
// only after taking that mmap_sem: lockdep reports the wait with the site
// that holds mmap_sem, on every run (it checks the wait, not the deadlock).
func TestPlantedPokeWaitCaught(t *testing.T) {
	for _, bug := range []bool{false, true} {
		got, stop := lockdep.Collect()
		e := newEnv(t, Options{ForcePokeData: true})
		e.w.test.pokeAsRequest = bug
		bin := testfix.Copy(t, buildOnce(t, "work", "-O2", "-pthread"))
		f := startFixture(t, bin, "1000", "1", "p")
		p := e.register(bin, "f_push")
		f.Go()
		if out, code := f.Wait(60 * time.Second); code != 0 {
			t.Fatalf("bug=%v: exit %d: %s", bug, code, out)
		}
		e.unregister(p)
		stop()
		vs := got()
		switch {
		case !bug && len(vs) != 0:
			t.Fatalf("correct world: violations %v", vs)
		case bug && (len(vs) == 0 || !vs[0].Wait || vs[0].Acquiring != lockdep.Tracer || vs[0].Held != lockdep.MmapSem):
			t.Fatalf("planted bug not caught as a wait for the tracer under mmap_sem: %v", vs)
		case bug:
			t.Logf("planted bug caught: %v", vs[0])
		}
	}
}
