//go:build planted

package probes_test

import (
	"sync"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/lockdep"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/core/sim"
)

// The planted-bug tests run one scenario twice: with the engine as is (the
// invariants and lock order must hold) and with a test-only planted bug
// (the checker must catch it). Hooks force the interleaving that exposes
// the bug, so each is caught on every run, not by luck.

const deadline = 20 * time.Second

// newPlantedFixture is newFixture with test hooks and planted bugs h.
func newPlantedFixture(t testing.TB, h probes.TestHooks) *fixture {
	t.Helper()
	eng := probes.NewEngine(probes.EngineOptions{})
	probes.SetTestHooks(eng, h)
	return newFixtureEngine(eng)
}

func waitCh(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(deadline):
		t.Fatalf("timeout waiting for %s", what)
	}
}

// scenarioStaleVMA: a register walk holds a VMA from its temp list while
// that VMA is unmapped and the range remapped to another file.
// With the grace period, the VMA object is not reused and the walk skips
// the dead VMA. Planted bug 1 (MunmapHook skips the grace period) lets the
// sim reuse the object for the new mapping; the walk then finds it "live"
// and writes 0xCC at its cached vaddr, now in the other file: a stale
// write (invariant 3), caught by Check's byte comparison.
func scenarioStaleVMA(t *testing.T, bug bool) error {
	paused, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f := newPlantedFixture(t, probes.TestHooks{
		SkipMunmapSync: bug,
		WalkBeforeMmapSem: func(v *rmap.VMA) {
			once.Do(func() {
				close(paused)
				<-resume
			})
		},
	})
	a := f.file(1, 2)
	p := f.w.Spawn()
	t.Cleanup(p.Exit)
	v1 := mustMmap(t, p, a, 0x10000, 0, ps, true)
	const off = 0x10
	done := make(chan error, 1)
	go func() { done <- f.eng.Register(a.Inode, off, a.Data[off:off+1], nil, &probes.Consumer{}) }()
	waitCh(t, paused, "the register walk")
	if err := p.Munmap(v1.Start); err != nil {
		close(resume)
		t.Fatal(err)
	}
	// Same range, another file with the same bytes (a copy of the
	// binary): verify-opcode cannot tell the difference.
	b := f.w.NewFile(rmap.InodeKey{Dev: 1, Ino: 2}, a.Data)
	v2 := mustMmap(t, p, b, 0x10000, 0, ps, true)
	if reused := v2 == v1; reused != bug {
		t.Errorf("VMA object reused = %v, want %v", reused, bug)
	}
	close(resume)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Register: %v", err)
		}
	case <-time.After(deadline):
		t.Fatal("Register did not return")
	}
	return f.w.Check(sim.Expect{a.Inode.Key: {off: 1}})
}

// firstViolation is the course of the lockdep scenarios: with violations
// collected, a fixture with hooks h registers a probe at 0x10 of a file that
// a new process maps once, then then(p, vma) runs (if not nil); it returns
// the first violation reported, nil if none.
func firstViolation(t *testing.T, h probes.TestHooks, then func(p *sim.Proc, v *rmap.VMA)) *lockdep.Violation {
	collected, stop := lockdep.Collect()
	defer stop()
	f := newPlantedFixture(t, h)
	a := f.file(1, 1)
	p := f.w.Spawn()
	t.Cleanup(p.Exit)
	v := mustMmap(t, p, a, 0x10000, 0, ps, true)
	f.register(t, a, 0x10, &probes.Consumer{})
	if then != nil {
		then(p, v)
	}
	if got := collected(); len(got) > 0 {
		return got[0]
	}
	return nil
}

// scenarioLockOrder: planted bug 2 takes i_mmap_mutex before mmap_sem in
// the register walk; lockdep reports it with both acquisition sites.
func scenarioLockOrder(t *testing.T, bug bool) error {
	v := firstViolation(t, probes.TestHooks{IMapBeforeMmapSem: bug}, nil)
	if v == nil {
		return nil
	}
	if v.Held != lockdep.IMmapMutex || v.Acquiring != lockdep.MmapSem || v.HeldSite == "" || v.AcqSite == "" {
		t.Errorf("unexpected violation: %v", v)
	}
	return v
}

// scenarioSyncUnderMmapSem: planted bug 4 waits for the srcu grace period
// in MunmapHook, under mmap_sem held for writing, as the seed's
// munmap_uprobe does (a deadlock with a register walk that holds srcu and
// waits for that mmap_sem). lockdep reports the wait, with the site that
// took mmap_sem, whether or not a walk happens to be running.
func scenarioSyncUnderMmapSem(t *testing.T, bug bool) error {
	w := firstViolation(t, probes.TestHooks{SyncUnderMmapSem: bug}, func(p *sim.Proc, v *rmap.VMA) {
		if err := p.Munmap(v.Start); err != nil {
			t.Fatal(err)
		}
	})
	if w == nil {
		return nil
	}
	if !w.Wait || w.Held != lockdep.MmapSem || w.Acquiring != lockdep.SRCU || w.HeldSite == "" {
		t.Errorf("unexpected violation: %v", w)
	}
	return w
}

// scenarioDeleteRace: an unregister of u1 has walked (before the new VMA
// existed) and is about to delete u1 while an MmapHook has u1 and u2 on its
// pending list. With uprobes_mmap_mutex the deletion waits for the hook.
// Planted bug 3 deletes at once; the deleted u1's link is poisoned (as
// kfree would), the hook loses the rest of its list and u2's breakpoint is
// missing from the new mapping (invariant 1), caught by Check.
func scenarioDeleteRace(t *testing.T, bug bool) error {
	reached, proceed, unregDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	const o1, o2 = 0x10, 0x20
	var f *fixture
	f = newPlantedFixture(t, probes.TestHooks{
		DeleteWithoutMmapMutex: bug,
		BeforeDelete: func(u *probes.Uprobe) {
			if u.Offset == o1 {
				close(reached)
				<-proceed
			}
		},
		MmapCollected: func(v *rmap.VMA) {
			close(proceed)
			if bug {
				// Without the mutex nothing stops the deletion:
				// let it land while the list is in use.
				<-unregDone
			}
		},
	})
	a := f.file(1, 1)
	c1, c2 := &probes.Consumer{}, &probes.Consumer{}
	f.register(t, a, o1, c1)
	f.register(t, a, o2, c2)
	p := f.w.Spawn()
	t.Cleanup(p.Exit)
	errc := make(chan error, 1)
	go func() {
		defer close(unregDone)
		errc <- f.eng.Unregister(a.Inode, o1, c1)
	}()
	waitCh(t, reached, "unregister to reach delete_uprobe")
	mustMmap(t, p, a, 0x10000, 0, ps, true)
	waitCh(t, unregDone, "unregister")
	if err := <-errc; err != nil {
		t.Fatalf("Unregister: %v", err)
	}
	return f.w.Check(sim.Expect{a.Inode.Key: {o2: 1}})
}

func TestPlantedBugsCaught(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, bool) error
	}{
		{"SkipMunmapSynchronize", scenarioStaleVMA},
		{"IMmapMutexBeforeMmapSem", scenarioLockOrder},
		{"DeleteWithoutUprobesMmapMutex", scenarioDeleteRace},
		{"SynchronizeSrcuUnderMmapSem", scenarioSyncUnderMmapSem},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.run(t, false); err != nil {
				t.Fatalf("correct engine: %v", err)
			}
			err := tc.run(t, true)
			if err == nil {
				t.Fatal("planted bug not caught")
			}
			t.Logf("planted bug caught: %v", err)
		})
	}
}
