package probes_test

import (
	"errors"
	"slices"
	"sync"
	"syscall"
	"testing"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/core/sim"
)

// batchRecorder is an EngineOptions.Batch that records every run: the VMA,
// its vaddrs, and whether each of its calls fell between its start and end.
type batchRecorder struct {
	mu sync.Mutex
	// open counts the runs under way in each MM: two VMAs of one MM can
	// be walked at once (both hold its mmap_sem for reading).
	open map[*rmap.MM]int
	runs []batchRun
	out  int // install/remove calls outside a run
}

type batchRun struct {
	v      *rmap.VMA
	vaddrs []uint64
}

func (r *batchRecorder) batch(v *rmap.VMA, vaddrs []uint64) func() {
	r.mu.Lock()
	r.open[v.MM]++
	r.runs = append(r.runs, batchRun{v, slices.Clone(vaddrs)})
	r.mu.Unlock()
	return func() { r.mu.Lock(); r.open[v.MM]--; r.mu.Unlock() }
}

func (r *batchRecorder) call(mm *rmap.MM) {
	r.mu.Lock()
	if r.open[mm] == 0 {
		r.out++
	}
	r.mu.Unlock()
}

// TestRegisterManyUnregisterMany: 50 probes on a file 20 processes map
// (twice in one of them, and once not executable) are registered by one
// RegisterMany and removed by one UnregisterMany: every breakpoint is in
// (resp. out), counts are right, each executable VMA was one batch run
// holding exactly its breakpoints, and no install or remove call came
// outside a run.
func TestRegisterManyUnregisterMany(t *testing.T) {
	rec := &batchRecorder{open: map[*rmap.MM]int{}}
	eng := probes.NewEngine(probes.EngineOptions{
		Install: func(mm *rmap.MM, vaddr uint64, u *probes.Uprobe) error {
			rec.call(mm)
			return mm.AS.WriteMemory(vaddr, []byte{0xCC})
		},
		Remove: func(mm *rmap.MM, vaddr uint64, u *probes.Uprobe) error {
			rec.call(mm)
			return mm.AS.WriteMemory(vaddr, u.Insn[:1])
		},
		Batch: rec.batch,
	})
	f := newFixtureEngine(eng)
	a := f.file(1, 4)
	key := a.Inode.Key
	for i := range 20 {
		p := f.w.Spawn()
		mustMmap(t, p, a, 0x10000, 0, 4*ps, true)
		if i == 0 {
			mustMmap(t, p, a, 0x40000, 2*ps, 2*ps, true) // the last two pages again
			mustMmap(t, p, a, 0x60000, 0, 4*ps, false)   // not executable
		}
	}
	var regs []probes.Registration
	var unregs []probes.Unregistration
	want := map[uint64]int{}
	for i := range 50 {
		off := uint64(i*4*ps/50 + 1)
		c := &probes.Consumer{Name: "c"}
		regs = append(regs, probes.Registration{Off: off, Insn: a.Data[off : off+1], C: c})
		unregs = append(unregs, probes.Unregistration{Off: off, C: c})
		want[off] = 1
	}
	// A second consumer on the first offset, in the same batch.
	c2 := &probes.Consumer{Name: "second"}
	regs = append(regs, probes.Registration{Off: regs[0].Off, Insn: regs[0].Insn, C: c2})
	unregs = append(unregs, probes.Unregistration{Off: regs[0].Off, C: c2})
	want[regs[0].Off] = 2
	if err := eng.RegisterMany(a.Inode, regs); err != nil {
		t.Fatal(err)
	}
	f.check(t, sim.Expect{key: want})
	if len(rec.runs) != 21 || rec.out != 0 {
		t.Fatalf("%d batch runs (want 21: one a VMA), %d calls outside a run", len(rec.runs), rec.out)
	}
	for _, r := range rec.runs {
		n := 0
		for off := range want {
			if _, ok := r.v.VaddrOf(off); ok {
				n++
			}
		}
		if len(r.vaddrs) != n {
			t.Errorf("run on %v: %d vaddrs, want %d", r.v, len(r.vaddrs), n)
		}
	}
	// A VMA mapped later gets its breakpoints in one run too (MmapHook).
	rec.runs = nil
	late := f.w.Spawn()
	mustMmap(t, late, a, 0x10000, 0, 4*ps, true)
	if len(rec.runs) != 1 || len(rec.runs[0].vaddrs) != 50 || rec.out != 0 {
		t.Fatalf("a late mapping: %d runs, %d calls outside a run", len(rec.runs), rec.out)
	}
	f.check(t, sim.Expect{key: want})
	if err := eng.RegisterMany(a.Inode, regs[:1]); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("a consumer registered again: %v, want EEXIST", err)
	}
	f.check(t, sim.Expect{key: want})
	// ENOENT for one that is not registered: nothing is removed.
	bad := append(slices.Clone(unregs), probes.Unregistration{Off: 3, C: &probes.Consumer{}})
	if err := eng.UnregisterMany(a.Inode, bad); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("UnregisterMany with a stranger: %v, want ENOENT", err)
	}
	f.check(t, sim.Expect{key: want})
	rec.runs = nil
	if err := eng.UnregisterMany(a.Inode, unregs); err != nil {
		t.Fatal(err)
	}
	f.check(t, sim.Expect{})
	if len(rec.runs) != 22 || rec.out != 0 {
		t.Fatalf("removal: %d batch runs (want 22), %d calls outside a run", len(rec.runs), rec.out)
	}
}

// TestRegisterManyRollback: an install error in the middle of a batch
// leaves no registration of it (and no breakpoint), and a probe
// registered before the batch keeps its breakpoints.
func TestRegisterManyRollback(t *testing.T) {
	n := 0
	eng := probes.NewEngine(probes.EngineOptions{
		Install: func(mm *rmap.MM, vaddr uint64, u *probes.Uprobe) error {
			if n++; n == 40 {
				return syscall.EPERM
			}
			return mm.AS.WriteMemory(vaddr, []byte{0xCC})
		},
	})
	f := newFixtureEngine(eng)
	a := f.file(1, 2)
	for range 5 {
		mustMmap(t, f.w.Spawn(), a, 0x10000, 0, 2*ps, true)
	}
	keep := &probes.Consumer{Name: "keep"}
	f.register(t, a, 0x20, keep)
	var regs []probes.Registration
	for i := range 20 {
		off := uint64(0x100 + 0x40*i)
		regs = append(regs, probes.Registration{Off: off, Insn: a.Data[off : off+1], C: &probes.Consumer{}})
	}
	regs = append(regs, probes.Registration{Off: 0x20, Insn: a.Data[0x20:0x21], C: &probes.Consumer{Name: "second on keep"}})
	err := eng.RegisterMany(a.Inode, regs)
	var me *probes.ManyError
	// The walk goes VMA by VMA: keep's 5 installs, then 20 in the first
	// VMA, and the 40th install is the 15th breakpoint of the second.
	if !errors.Is(err, syscall.EPERM) || !errors.As(err, &me) || me.Index != 14 {
		t.Fatalf("RegisterMany = %v, want EPERM of regs[14]", err)
	}
	f.check(t, sim.Expect{a.Inode.Key: {0x20: 1}})
	if err := eng.Unregister(a.Inode, 0x20, keep); err != nil {
		t.Fatal(err)
	}
	f.check(t, sim.Expect{})
}
