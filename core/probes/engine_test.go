package probes_test

import (
	"errors"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/core/sim"
)

const ps = sim.PageSize

// fileData returns n bytes of deterministic random data without 0xCC, so
// that any 0xCC in memory is a breakpoint.
func fileData(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := range b {
		for {
			b[i] = byte(r.UintN(256))
			if b[i] != 0xCC {
				break
			}
		}
	}
	return b
}

type fixture struct {
	eng    *probes.Engine
	inodes *rmap.Inodes
	w      *sim.World
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureEngine(probes.NewEngine(probes.EngineOptions{}))
}

func newFixtureEngine(eng *probes.Engine) *fixture {
	inodes := &rmap.Inodes{}
	return &fixture{eng: eng, inodes: inodes, w: sim.NewWorld(eng, inodes)}
}

func (f *fixture) file(ino uint64, pages int) *sim.File {
	return f.w.NewFile(rmap.InodeKey{Dev: 1, Ino: ino}, fileData(ino, pages*ps))
}

func (f *fixture) register(t testing.TB, file *sim.File, off uint64, c *probes.Consumer) {
	t.Helper()
	if err := f.eng.Register(file.Inode, off, file.Data[off:off+1], nil, c); err != nil {
		t.Fatalf("Register %#x: %v", off, err)
	}
}

func (f *fixture) check(t testing.TB, exp sim.Expect) {
	t.Helper()
	if err := f.w.Check(exp); err != nil {
		t.Fatalf("invariants: %v", err)
	}
}

func mustMmap(t testing.TB, p *sim.Proc, file *sim.File, start, pgoff, length uint64, exec bool) *rmap.VMA {
	t.Helper()
	v, err := p.Mmap(file, start, pgoff, length, exec)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	return v
}

func TestRegisterUnregisterBasic(t *testing.T) {
	f := newFixture(t)
	a := f.file(1, 3)
	key := a.Inode.Key
	p := f.w.Spawn()
	mustMmap(t, p, a, 0x10000, 0, 3*ps, true)
	mustMmap(t, p, a, 0x20000, ps, ps, true)   // same text mapped twice
	mustMmap(t, p, a, 0x30000, 0, 3*ps, false) // not executable: never probed

	c1, c2 := &probes.Consumer{Name: "a"}, &probes.Consumer{Name: "b"}
	off := uint64(ps + 0x10)
	f.register(t, a, off, c1)
	f.check(t, sim.Expect{key: {off: 1}})
	if got := p.MM.UprobesCount(); got != 2 {
		t.Fatalf("mm uprobes_count = %d, want 2", got)
	}
	f.register(t, a, off, c2)
	if err := f.eng.Register(a.Inode, off, a.Data[off:off+1], nil, c2); !errors.Is(err, syscall.EEXIST) {
		t.Fatalf("duplicate consumer: %v, want EEXIST", err)
	}
	f.check(t, sim.Expect{key: {off: 2}})

	// A mapping made after registration gets the breakpoint; fork copies count.
	mustMmap(t, p, a, 0x40000, 0, 2*ps, true)
	child, err := p.Fork()
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, sim.Expect{key: {off: 2}})
	if got := child.MM.UprobesCount(); got != 3 {
		t.Fatalf("child uprobes_count = %d, want 3", got)
	}

	// Hit path.
	var handled int
	c3 := &probes.Consumer{Name: "h", Handler: func(u *probes.Uprobe, h probes.Hit) { handled++ }}
	f.register(t, a, off, c3)
	p.MM.MmapSem.RLock()
	u := f.eng.LookupLocked(p.MM, 0x20010)
	miss := f.eng.LookupLocked(p.MM, 0x20011)
	p.MM.MmapSem.RUnlock()
	if u == nil || u.Offset != off || miss != nil {
		t.Fatalf("LookupLocked = %v, %v", u, miss)
	}
	f.eng.Dispatch(u, probes.Hit{Pid: 1, Tid: 1, Vaddr: 0x20010})
	if c1.Hits() != 1 || c2.Hits() != 1 || c3.Hits() != 1 || handled != 1 {
		t.Fatalf("hits %d %d %d handled %d", c1.Hits(), c2.Hits(), c3.Hits(), handled)
	}
	// A consumer's filter: hits of processes it rejects are not its own.
	c4 := &probes.Consumer{Name: "only pid 2", Filter: func(pid int) bool { return pid == 2 },
		Handler: func(u *probes.Uprobe, h probes.Hit) { handled++ }}
	f.register(t, a, off, c4)
	f.eng.Dispatch(u, probes.Hit{Pid: 1, Tid: 1, Vaddr: 0x20010})
	f.eng.Dispatch(u, probes.Hit{Pid: 2, Tid: 2, Vaddr: 0x20010})
	if c1.Hits() != 3 || c4.Hits() != 1 || handled != 4 {
		t.Fatalf("with a filtered consumer: hits %d, filtered %d, handled %d; want 3, 1, 4", c1.Hits(), c4.Hits(), handled)
	}

	for _, c := range []*probes.Consumer{c1, c2, c3, c4} {
		if err := f.eng.Unregister(a.Inode, off, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.eng.Unregister(a.Inode, off, c1); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("second unregister: %v, want ENOENT", err)
	}
	f.check(t, sim.Expect{})
	child.Exit()
	p.Exit()
	f.check(t, sim.Expect{})
}

// TestRegisterRollback: an install error other than EEXIST/ESRCH aborts
// the registration and removes what was installed.
func TestRegisterRollback(t *testing.T) {
	var n int
	inodes := &rmap.Inodes{}
	var eng *probes.Engine
	eng = probes.NewEngine(probes.EngineOptions{
		Install: func(mm *rmap.MM, vaddr uint64, u *probes.Uprobe) error {
			n++
			if n == 3 {
				return syscall.EPERM
			}
			b := []byte{0xCC}
			return mm.AS.WriteMemory(vaddr, b)
		},
	})
	w := sim.NewWorld(eng, inodes)
	a := w.NewFile(rmap.InodeKey{Dev: 1, Ino: 1}, fileData(1, ps))
	for i := 0; i < 4; i++ {
		p := w.Spawn()
		if _, err := p.Mmap(a, 0x10000, 0, ps, true); err != nil {
			t.Fatal(err)
		}
	}
	err := eng.Register(a.Inode, 0x10, a.Data[0x10:0x11], nil, &probes.Consumer{})
	if !errors.Is(err, syscall.EPERM) {
		t.Fatalf("Register = %v, want EPERM", err)
	}
	if err := w.Check(sim.Expect{}); err != nil {
		t.Fatalf("after rollback: %v", err)
	}
}

// TestExitedMMIsNotAFailure: ESRCH from install is not a failure.
func TestExitedMMIsNotAFailure(t *testing.T) {
	f := newFixture(t)
	a := f.file(1, 1)
	p := f.w.Spawn()
	mustMmap(t, p, a, 0x10000, 0, ps, true)
	gone := false
	eng := probes.NewEngine(probes.EngineOptions{
		Install: func(mm *rmap.MM, vaddr uint64, u *probes.Uprobe) error {
			gone = true
			return syscall.ESRCH
		},
	})
	if err := eng.Register(a.Inode, 0x10, a.Data[0x10:0x11], nil, &probes.Consumer{}); err != nil || !gone {
		t.Fatalf("Register = %v (install called %v)", err, gone)
	}
}
