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

// want is one violation a test expects: the class held and the class
// acquired, or waited for if wait.
type want struct {
	held, acq Class
	wait      bool
}

// wantViolations fails t at once unless got has recorded exactly ws, in
// order, each with both of its sites (what says of which sequence), and if
// this goroutine still holds a lock.
func wantViolations(t *testing.T, got func() []*Violation, what string, ws ...want) {
	t.Helper()
	v := got()
	ok := len(v) == len(ws)
	for i := 0; ok && i < len(v); i++ {
		ok = v[i].Held == ws[i].held && v[i].Acquiring == ws[i].acq && v[i].Wait == ws[i].wait &&
			v[i].HeldSite != "" && v[i].AcqSite != "" && v[i].HeldSite != v[i].AcqSite
	}
	if !ok {
		t.Fatalf("%s: violations: %v, want %v", what, v, ws)
	}
	if hc := HeldClasses(); len(hc) != 0 {
		t.Fatalf("%s: still held: %v", what, hc)
	}
}

// wantNone fails t at once if got has recorded a violation, and if this
// goroutine still holds a lock.
func wantNone(t *testing.T, got func() []*Violation, what string) {
	t.Helper()
	wantViolations(t, got, what)
}

// seedLocks is one lock of each class of the seed's hierarchy, named as in
// the kernel, for tests to take in or out of order.
type seedLocks struct {
	iMutex, iMmapMutex, uprobesMmapMutex, treelock *Mutex
	mmapSem                                        *RWMutex
}

func newSeedLocks() seedLocks {
	return seedLocks{
		iMutex:           NewMutex(IMutex, "i_mutex"),
		mmapSem:          NewRWMutex(MmapSem, "mmap_sem"),
		iMmapMutex:       NewMutex(IMmapMutex, "i_mmap_mutex"),
		uprobesMmapMutex: NewMutex(UprobesMmapMutex, "uprobes_mmap_mutex"),
		treelock:         NewMutex(Treelock, "treelock"),
	}
}

func TestInOrderIsSilent(t *testing.T) {
	got := record(t)
	l := newSeedLocks()
	l.iMutex.Lock()
	l.mmapSem.RLock()
	l.iMmapMutex.Lock()
	l.iMmapMutex.Unlock()
	l.uprobesMmapMutex.Lock()
	l.treelock.Lock()
	if hc := HeldClasses(); len(hc) != 4 || hc[3] != Treelock {
		t.Errorf("HeldClasses = %v", hc)
	}
	l.treelock.Unlock()
	l.uprobesMmapMutex.Unlock()
	l.mmapSem.RUnlock()
	l.iMutex.Unlock()
	wantNone(t, got, "in order")
}

func TestOutOfOrderReportedWithBothSites(t *testing.T) {
	l := newSeedLocks()
	got := record(t)
	l.iMmapMutex.Lock()
	l.mmapSem.RLock()
	l.mmapSem.RUnlock()
	l.iMmapMutex.Unlock()
	wantViolations(t, got, "mmap_sem under i_mmap_mutex", want{held: IMmapMutex, acq: MmapSem})
	t.Log(got()[0])
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
	wantViolations(t, got, "same class without nesting", want{held: MmapSem, acq: MmapSem})
}

func TestTryLockIsChecked(t *testing.T) {
	l := newSeedLocks()
	got := record(t)
	if !l.mmapSem.TryLock() {
		t.Fatal("TryLock failed")
	}
	l.treelock.Lock()
	l.treelock.Unlock()
	l.mmapSem.Unlock()
	wantNone(t, got, "in order")
	l.treelock.Lock()
	if !l.mmapSem.TryRLock() {
		t.Fatal("TryRLock failed")
	}
	l.mmapSem.RUnlock()
	l.treelock.Unlock()
	// A failed TryLock is reported too: a retry loop around it waits.
	l.mmapSem.Lock()
	done := make(chan bool)
	go func() {
		n := NewMutex(Treelock, "t2")
		n.Lock()
		done <- l.mmapSem.TryLock()
		n.Unlock()
	}()
	if <-done {
		t.Fatal("TryLock of a held lock succeeded")
	}
	l.mmapSem.Unlock()
	wantViolations(t, got, "TryRLock, then a failed TryLock", want{held: Treelock, acq: MmapSem}, want{held: Treelock, acq: MmapSem})
}

func TestWaits(t *testing.T) {
	l := newSeedLocks()
	got := record(t)
	// A grace-period wait under mmap_sem: reported.
	l.mmapSem.Lock()
	Wait(SRCU, "uprobes_srcu")
	l.mmapSem.Unlock()
	// Under i_mutex it is in order, and so is a read section that takes
	// mmap_sem; read sections nest.
	l.iMutex.Lock()
	Wait(SRCU, "uprobes_srcu")
	var sec byte
	AcquireRead(&sec, SRCU, "uprobes_srcu")
	AcquireRead(&sec, SRCU, "uprobes_srcu")
	l.mmapSem.RLock()
	l.mmapSem.RUnlock()
	ReleaseRead(&sec, SRCU)
	ReleaseRead(&sec, SRCU)
	l.iMutex.Unlock()
	srcuWait := want{held: MmapSem, acq: SRCU, wait: true}
	wantViolations(t, got, "grace period under mmap_sem", srcuWait)
	// Waiting for the tracer under any lock is reported; a poke is not,
	// but a lock taken while serving one is.
	l.iMutex.Lock()
	Wait(Tracer, "tracer")
	Wait(TracerPoke, "tracer poke")
	l.iMutex.Unlock()
	done := Hold(TracerPoke, "serving a poke")
	l.mmapSem.Lock()
	l.mmapSem.Unlock()
	done()
	l.mmapSem.Lock()
	l.mmapSem.Unlock()
	wantViolations(t, got, "tracer waits", srcuWait, want{held: IMutex, acq: Tracer, wait: true}, want{held: TracerPoke, acq: MmapSem})
}

func TestPerGoroutine(t *testing.T) {
	l := newSeedLocks()
	got := record(t)
	l.treelock.Lock()
	done := make(chan struct{})
	go func() { // another goroutine holds nothing: in order
		defer close(done)
		l.iMutex.Lock()
		l.iMutex.Unlock()
	}()
	<-done
	l.treelock.Unlock()
	wantNone(t, got, "another goroutine")
}

func TestDefaultReporterPanics(t *testing.T) {
	l := newSeedLocks()
	l.treelock.Lock()
	defer l.treelock.Unlock()
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
		release(l.iMutex, l.iMutex.class) // the report came before the lock was taken
	}()
	l.iMutex.Lock()
}
