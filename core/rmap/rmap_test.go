package rmap

import (
	"os"
	"testing"

	"github.com/uprobefs/uprobefs/core/lockdep"
)

func TestMain(m *testing.M) {
	lockdep.Enable()
	os.Exit(m.Run())
}

func TestVMAsAndMapping(t *testing.T) {
	var inodes Inodes
	in := inodes.Get(InodeKey{1, 2})
	if inodes.Get(InodeKey{1, 2}) != in || inodes.Lookup(InodeKey{9, 9}) != nil {
		t.Fatal("Get/Lookup identity")
	}
	mm := NewMM(1, nil)
	mm.MmapSem.Lock()
	a := &VMA{Start: 0x1000, End: 0x3000, Pgoff: 0x2000, Inode: in, Exec: true}
	b := &VMA{Start: 0x8000, End: 0x9000, Pgoff: 0x2000, Inode: in, Exec: true}
	mm.InsertVMALocked(b)
	mm.InsertVMALocked(a)
	if vs := mm.VMAsLocked(); len(vs) != 2 || vs[0] != a || vs[1] != b {
		t.Fatalf("VMAsLocked = %v", vs)
	}
	if mm.FindVMALocked(0x2fff) != a || mm.FindVMALocked(0x3000) != nil || mm.FindVMALocked(0x8000) != b {
		t.Fatal("FindVMALocked")
	}
	if va, ok := a.VaddrOf(0x2010); !ok || va != 0x1010 || a.OffsetOf(0x1010) != 0x2010 {
		t.Fatal("VaddrOf/OffsetOf")
	}
	if _, ok := a.VaddrOf(0x1fff); ok {
		t.Fatal("VaddrOf below pgoff")
	}
	if vs := in.AppendVMAs(nil, 0x2010); len(vs) != 2 {
		t.Fatalf("covering 0x2010: %v", vs)
	}
	if vs := in.AppendVMAs(nil, 0x3010); len(vs) != 1 || vs[0] != a {
		t.Fatalf("covering 0x3010: %v", vs)
	}
	if !a.AddBreakpointLocked(0x2010) || a.AddBreakpointLocked(0x2010) || mm.UprobesCount() != 1 {
		t.Fatal("AddBreakpointLocked counts once")
	}
	mm.RemoveVMALocked(a)
	if a.LiveLocked() || in.MappingLen() != 1 || a.ClearBreakpointsLocked() != 1 || mm.UprobesCount() != 0 {
		t.Fatal("remove")
	}
	mm.MmapSem.Unlock()
}
