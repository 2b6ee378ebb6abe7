package srcu

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

const deadline = 20 * time.Second

func TestSynchronizeWaitsForEarlierReaderOnly(t *testing.T) {
	var s SRCU
	r1 := s.ReadLock()
	before := s.idx.Load()
	done := make(chan struct{})
	go func() { s.Synchronize(); close(done) }()
	// Wait until Synchronize has flipped the index: a reader starting
	// now begins after it and must not be waited for.
	for end := time.Now().Add(deadline); s.idx.Load() == before; {
		if time.Now().After(end) {
			t.Fatal("Synchronize never flipped")
		}
		time.Sleep(time.Millisecond)
	}
	r2 := s.ReadLock()
	select {
	case <-done:
		t.Fatal("Synchronize returned while an earlier reader is inside")
	case <-time.After(20 * time.Millisecond):
	}
	s.ReadUnlock(r1)
	select {
	case <-done:
	case <-time.After(deadline):
		t.Fatal("Synchronize waited for a later reader")
	}
	s.ReadUnlock(r2)
	s.Synchronize() // nothing inside: returns
}

// TestStressSRCU: readers load a published object inside a read section
// and check it is not yet freed; the writer replaces it, synchronizes, and
// only then frees the old one.
func TestStressSRCU(t *testing.T) {
	type obj struct{ freed atomic.Bool }
	var s SRCU
	var cur atomic.Pointer[obj]
	cur.Store(&obj{})
	var bad atomic.Int64
	stop := testfix.Spin(4, func(int) {
		idx := s.ReadLock()
		o := cur.Load()
		for k := 0; k < 10; k++ {
			if o.freed.Load() {
				bad.Add(1)
			}
		}
		if idx&1 == 0 {
			time.Sleep(10 * time.Microsecond) // readers may block
		}
		if o.freed.Load() {
			bad.Add(1)
		}
		s.ReadUnlock(idx)
	})
	end := time.Now().Add(300 * time.Millisecond)
	for n := 0; time.Now().Before(end); n++ {
		old := cur.Swap(&obj{})
		s.Synchronize()
		old.freed.Store(true)
	}
	stop()
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d reads of a freed object", n)
	}
}

func BenchmarkSRCUReadPair(b *testing.B) {
	var s SRCU
	for b.Loop() {
		s.ReadUnlock(s.ReadLock())
	}
}

func BenchmarkRWMutexRLockPair(b *testing.B) {
	var m sync.RWMutex
	for b.Loop() {
		m.RLock()
		m.RUnlock()
	}
}

func BenchmarkSRCUReadPairParallel(b *testing.B) {
	var s SRCU
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.ReadUnlock(s.ReadLock())
		}
	})
}

func BenchmarkRWMutexRLockPairParallel(b *testing.B) {
	var m sync.RWMutex
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.RLock()
			m.RUnlock()
		}
	})
}
