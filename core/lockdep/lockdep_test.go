package lockdep

import (
	"os"
	"sync"
	"testing"
)

func TestMain(m *testing.M) {
	Enable()
	os.Exit(m.Run())
}

func record(t *testing.T) func() []*Violation {
	var mu sync.Mutex
	var got []*Violation
	restore := SetReporter(func(v *Violation) {
		mu.Lock()
		got = append(got, v)
		mu.Unlock()
	})
	t.Cleanup(restore)
	return func() []*Violation {
		mu.Lock()
		defer mu.Unlock()
		return append([]*Violation(nil), got...)
	}
}

func TestInOrderIsSilent(t *testing.T) {
	got := record(t)
	i := NewMutex(IMutex, "i")
	s := NewRWMutex(MmapSem, "s")
	m := NewMutex(IMmapMutex, "m")
	u := NewMutex(UprobesMmapMutex, "u")
	tr := NewMutex(Treelock, "t")
	i.Lock()
	s.RLock()
	m.Lock()
	m.Unlock()
	u.Lock()
	tr.Lock()
	if hc := HeldClasses(); len(hc) != 4 || hc[3] != Treelock {
		t.Errorf("HeldClasses = %v", hc)
	}
	tr.Unlock()
	u.Unlock()
	s.RUnlock()
	i.Unlock()
	if v := got(); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}
	if hc := HeldClasses(); len(hc) != 0 {
		t.Errorf("still held: %v", hc)
	}
}

func TestOutOfOrderReportedWithBothSites(t *testing.T) {
	got := record(t)
	m := NewMutex(IMmapMutex, "i_mmap_mutex")
	s := NewRWMutex(MmapSem, "mmap_sem")
	m.Lock()
	s.RLock()
	s.RUnlock()
	m.Unlock()
	v := got()
	if len(v) != 1 || v[0].Held != IMmapMutex || v[0].Acquiring != MmapSem || v[0].HeldSite == "" || v[0].AcqSite == "" || v[0].HeldSite == v[0].AcqSite {
		t.Fatalf("violations: %v", v)
	}
	t.Log(v[0])
}

func TestSameClassNeedsNesting(t *testing.T) {
	got := record(t)
	a, b := NewRWMutex(MmapSem, "parent"), NewRWMutex(MmapSem, "child")
	a.Lock()
	b.LockNested(1)
	b.Unlock()
	a.Unlock()
	if v := got(); len(v) != 0 {
		t.Fatalf("nested: %v", v)
	}
	a.Lock()
	b.Lock()
	b.Unlock()
	a.Unlock()
	if v := got(); len(v) != 1 {
		t.Fatalf("same class without nesting: %v", v)
	}
}

func TestTryLockNeverViolates(t *testing.T) {
	got := record(t)
	m := NewMutex(Treelock, "t")
	s := NewRWMutex(MmapSem, "s")
	m.Lock()
	if !s.TryRLock() {
		t.Fatal("TryRLock failed")
	}
	s.RUnlock()
	m.Unlock()
	if v := got(); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}
}

func TestPerGoroutine(t *testing.T) {
	got := record(t)
	m := NewMutex(Treelock, "t")
	s := NewMutex(IMutex, "i")
	m.Lock()
	done := make(chan struct{})
	go func() { // another goroutine holds nothing: in order
		defer close(done)
		s.Lock()
		s.Unlock()
	}()
	<-done
	m.Unlock()
	if v := got(); len(v) != 0 {
		t.Fatalf("violations: %v", v)
	}
}

func TestDefaultReporterPanics(t *testing.T) {
	m := NewMutex(Treelock, "t")
	s := NewMutex(IMutex, "i")
	m.Lock()
	defer m.Unlock()
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
		release(s, s.class) // the report came before the lock was taken
	}()
	s.Lock()
}
