package lockdep

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	Enable()
	os.Exit(m.Run())
}

func record(t *testing.T) func() []*Violation {
	got, stop := Collect()
	t.Cleanup(stop)
	return got
}

// wantNone fails t at once if got has recorded a violation (what says of
// which sequence), and if this goroutine still holds a lock.
func wantNone(t *testing.T, got func() []*Violation, what string) {
	t.Helper()
	if v := got(); len(v) != 0 {
		t.Fatalf("%s: violations: %v", what, v)
	}
	if hc := HeldClasses(); len(hc) != 0 {
		t.Fatalf("%s: still held: %v", what, hc)
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
	wantNone(t, got, "in order")
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
	wantNone(t, got, "nested")
	a.Lock()
	b.Lock()
	b.Unlock()
	a.Unlock()
	if v := got(); len(v) != 1 {
		t.Fatalf("same class without nesting: %v", v)
	}
}

func TestTryLockIsChecked(t *testing.T) {
	got := record(t)
	m := NewMutex(Treelock, "t")
	s := NewRWMutex(MmapSem, "s")
	if !s.TryLock() {
		t.Fatal("TryLock failed")
	}
	m.Lock()
	m.Unlock()
	s.Unlock()
	wantNone(t, got, "in order")
	m.Lock()
	if !s.TryRLock() {
		t.Fatal("TryRLock failed")
	}
	s.RUnlock()
	m.Unlock()
	// A failed TryLock is reported too: a retry loop around it waits.
	s.Lock()
	done := make(chan bool)
	go func() {
		n := NewMutex(Treelock, "t2")
		n.Lock()
		done <- s.TryLock()
		n.Unlock()
	}()
	if <-done {
		t.Fatal("TryLock of a held lock succeeded")
	}
	s.Unlock()
	if v := got(); len(v) != 2 || v[0].Acquiring != MmapSem || v[1].Acquiring != MmapSem {
		t.Fatalf("violations: %v", v)
	}
}

func TestWaits(t *testing.T) {
	got := record(t)
	s := NewRWMutex(MmapSem, "mmap_sem")
	i := NewMutex(IMutex, "i_mutex")
	// A grace-period wait under mmap_sem: reported.
	s.Lock()
	Wait(SRCU, "uprobes_srcu")
	s.Unlock()
	// Under i_mutex it is in order, and so is a read section that takes
	// mmap_sem; read sections nest.
	i.Lock()
	Wait(SRCU, "uprobes_srcu")
	var sec byte
	AcquireRead(&sec, SRCU, "uprobes_srcu")
	AcquireRead(&sec, SRCU, "uprobes_srcu")
	s.RLock()
	s.RUnlock()
	ReleaseRead(&sec, SRCU)
	ReleaseRead(&sec, SRCU)
	i.Unlock()
	if v := got(); len(v) != 1 || !v[0].Wait || v[0].Acquiring != SRCU || v[0].Held != MmapSem {
		t.Fatalf("violations: %v", v)
	}
	// Waiting for the tracer under any lock is reported; a poke is not,
	// but a lock taken while serving one is.
	i.Lock()
	Wait(Tracer, "tracer")
	Wait(TracerPoke, "tracer poke")
	i.Unlock()
	done := Hold(TracerPoke, "serving a poke")
	s.Lock()
	s.Unlock()
	done()
	s.Lock()
	s.Unlock()
	v := got()
	if len(v) != 3 || v[1].Acquiring != Tracer || v[1].Held != IMutex || v[2].Held != TracerPoke || v[2].Acquiring != MmapSem {
		t.Fatalf("violations: %v", v)
	}
	if hc := HeldClasses(); len(hc) != 0 {
		t.Errorf("still held: %v", hc)
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
	wantNone(t, got, "another goroutine")
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
