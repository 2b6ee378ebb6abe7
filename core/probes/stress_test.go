package probes_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/core/sim"
)

// stressConfig sizes one stress run.
type stressConfig struct {
	inodes, offsets, consumers int // uprobe slots: inodes × offsets × consumers
	pages                      int // pages per file
	regWorkers, mapWorkers     int
	phases, opsPerPhase        int
	maxProcs, addrSlots        int
}

var defaultStress = stressConfig{
	inodes: 3, offsets: 4, consumers: 3, pages: 3,
	regWorkers: 3, mapWorkers: 3,
	phases: 20, opsPerPhase: 40,
	maxProcs: 8, addrSlots: 6,
}

// slot is one (inode, offset, consumer) registration owned by the test.
type slot struct {
	mu         sync.Mutex // test-only, never held with another slot's
	file       *sim.File
	off        uint64
	c          *probes.Consumer
	registered bool // protected by mu
}

// TestStress runs random interleavings of Register/Unregister (several
// consumers per uprobe, several inodes and offsets) against
// mmap/munmap/fork/exit of simulated MMs, and at every quiescent point
// (between phases) checks invariants 1-5 against state recomputed from
// scratch (sim.World.Check). Invariant 4 is checked throughout by lockdep
// (on in TestMain; a violation panics) and by the phase deadline.
func TestStress(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 4, 5} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			if err := runStress(t, seed, defaultStress); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func runStress(t *testing.T, seed uint64, cfg stressConfig) error {
	f := newFixture(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	var files []*sim.File
	var slots []*slot
	for i := 0; i < cfg.inodes; i++ {
		file := f.w.NewFile(rmap.InodeKey{Dev: 7, Ino: uint64(100 + i)}, fileData(seed*100+uint64(i), cfg.pages*ps))
		files = append(files, file)
		offs := map[uint64]bool{}
		for len(offs) < cfg.offsets {
			offs[rng.Uint64N(uint64(cfg.pages*ps))] = true
		}
		for off := range offs {
			for c := 0; c < cfg.consumers; c++ {
				slots = append(slots, &slot{file: file, off: off, c: &probes.Consumer{Name: fmt.Sprintf("%d/%#x/%d", i, off, c)}})
			}
		}
	}
	// Stable slot order (map iteration above is random).
	sortSlots(slots)
	t.Cleanup(func() {
		for _, p := range f.w.Procs() {
			p.Exit()
		}
	})
	for i := 0; i < 2; i++ {
		f.w.Spawn()
	}

	for phase := 0; phase < cfg.phases; phase++ {
		var wg sync.WaitGroup
		errc := make(chan error, cfg.regWorkers+cfg.mapWorkers)
		for wkr := 0; wkr < cfg.regWorkers; wkr++ {
			r := rand.New(rand.NewPCG(seed, uint64(phase*100+wkr)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := regWorker(f, slots, r, cfg.opsPerPhase); err != nil {
					errc <- err
				}
			}()
		}
		for wkr := 0; wkr < cfg.mapWorkers; wkr++ {
			r := rand.New(rand.NewPCG(seed, uint64(phase*100+50+wkr)))
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := mapWorker(f, files, r, cfg); err != nil {
					errc <- err
				}
			}()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			return fmt.Errorf("seed %d phase %d: workers stuck (deadlock?)\n%s", seed, phase, buf)
		}
		close(errc)
		for err := range errc {
			return fmt.Errorf("seed %d phase %d: %w", seed, phase, err)
		}
		// Quiescent point.
		exp := sim.Expect{}
		for _, s := range slots {
			if s.registered {
				k := s.file.Inode.Key
				if exp[k] == nil {
					exp[k] = map[uint64]int{}
				}
				exp[k][s.off]++
			}
		}
		if err := f.w.Check(exp); err != nil {
			return fmt.Errorf("seed %d phase %d: invariants: %w", seed, phase, err)
		}
	}
	// Unregister everything: every byte must be the file's again.
	for _, s := range slots {
		if s.registered {
			if err := f.eng.Unregister(s.file.Inode, s.off, s.c); err != nil {
				return err
			}
			s.registered = false
		}
	}
	return f.w.Check(sim.Expect{})
}

func sortSlots(s []*slot) {
	less := func(a, b *slot) bool {
		if a.file.Inode.Key.Ino != b.file.Inode.Key.Ino {
			return a.file.Inode.Key.Ino < b.file.Inode.Key.Ino
		}
		if a.off != b.off {
			return a.off < b.off
		}
		return a.c.Name < b.c.Name
	}
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && less(s[j], s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func regWorker(f *fixture, slots []*slot, r *rand.Rand, ops int) error {
	for i := 0; i < ops; i++ {
		s := slots[r.IntN(len(slots))]
		s.mu.Lock()
		var err error
		if s.registered {
			err = f.eng.Unregister(s.file.Inode, s.off, s.c)
		} else {
			err = f.eng.Register(s.file.Inode, s.off, s.file.Data[s.off:s.off+1], nil, s.c)
		}
		if err == nil {
			s.registered = !s.registered
		}
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

func mapWorker(f *fixture, files []*sim.File, r *rand.Rand, cfg stressConfig) error {
	for i := 0; i < cfg.opsPerPhase; i++ {
		procs := f.w.Procs()
		if len(procs) == 0 {
			f.w.Spawn()
			continue
		}
		p := procs[r.IntN(len(procs))]
		var err error
		switch op := r.IntN(100); {
		case op < 45: // mmap
			file := files[r.IntN(len(files))]
			pg := r.IntN(cfg.pages)
			n := 1 + r.IntN(cfg.pages-pg)
			start := uint64(0x100000 + r.IntN(cfg.addrSlots)*0x10000)
			_, err = p.Mmap(file, start, uint64(pg*ps), uint64(n*ps), r.IntN(100) < 85)
			if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ESRCH) {
				err = nil // overlap or exited: no mapping made
			}
		case op < 80: // munmap
			if ms := p.Mappings(); len(ms) > 0 {
				err = p.Munmap(ms[r.IntN(len(ms))].Start)
				if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ESRCH) {
					err = nil // raced with another worker's munmap/exit
				}
			}
		case op < 92: // fork
			if len(procs) < cfg.maxProcs {
				_, err = p.Fork()
				if errors.Is(err, syscall.ESRCH) {
					err = nil
				}
			}
		default: // exit (keep one process)
			if len(procs) > 1 {
				p.Exit()
			} else {
				f.w.Spawn()
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}
