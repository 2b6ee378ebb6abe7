// Package srcu is sleepable RCU, after Linux's classic (3.x) SRCU: readers
// may block for long inside a read-side critical section, and Synchronize
// waits for every reader that began before it, never for one that begins
// after it.
//
// In uprobefs it is the seed's uprobes_srcu: "synchronize walking the vma
// list with munmap". Register/Unregister hold a read section while they hold
// pointers to VMAs taken from an inode's rmap; MunmapHook makes an unmapped
// VMA reusable only after a grace period (see core/probes).
//
// Implementation: two index sets of counters (lock and unlock counts per
// index), spread over cache-line-padded shards so that parallel readers do
// not share a cache line (the read side is two uncontended atomic adds, no
// mutex). A reader adds to the lock count of the current index and later to
// the unlock count of the same index. Synchronize (serialized by a mutex)
// waits until the inactive index drains (stragglers that read the index just
// before the previous flip), flips the index, and waits until the formerly
// active index drains: a set drains when the sum of unlock counts, read
// before the sum of lock counts, equals it. All atomics are sequentially
// consistent, so a reader counted after the check began after it and sees
// every write made before Synchronize was called.
//
// Locks: mu serializes Synchronize callers; it is a leaf and sits beside the
// lock hierarchy. Synchronize must not be called while holding a lock that a
// reader may wait for inside its read section (in uprobefs: any mmap_sem).
// Given a class (Init), read sections and grace-period waits are checked by
// core/lockdep: ReadLock as a read section of the class (they nest),
// Synchronize as a wait for it, so a Synchronize under a lock of a higher
// class (mmap_sem) is reported.
//
// It imports only core/lockdep and the standard library.
package srcu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/uprobefs/uprobefs/core/lockdep"
)

const (
	shardBits = 5
	nShards   = 1 << shardBits
)

// shard is one cache line of counters.
type shard struct {
	lock   [2]atomic.Int64 // lock counts per index; accessed atomically.
	unlock [2]atomic.Int64 // unlock counts per index; accessed atomically.
	_      [64 - 32]byte
}

// SRCU is a sleepable-RCU domain. The zero value is ready. It must not be
// copied after first use. All methods are safe for concurrent use.
type SRCU struct {
	// idx is the index new readers use (its low bit); accessed atomically.
	idx atomic.Uint32
	// class and name are set by Init before first use; immutable then.
	class lockdep.Class
	name  string
	// mu serializes Synchronize.
	mu     sync.Mutex
	_      [64]byte
	shards [nShards]shard
}

// Init gives s a lock class for core/lockdep (the zero value is unchecked).
// Call it before first use.
func (s *SRCU) Init(c lockdep.Class, name string) { s.class, s.name = c, name }

// ReadLock enters a read-side critical section and returns the value to
// pass to the matching ReadUnlock. Sections may nest and may block.
func (s *SRCU) ReadLock() int {
	// Pick a shard from the address of the goroutine's stack: goroutines
	// run on distinct stacks, so parallel readers mostly hit distinct
	// cache lines. Any shard is correct (counts are summed).
	var anchor byte
	a := uintptr(unsafe.Pointer(&anchor)) >> 11
	sh := int(a^a>>shardBits) & (nShards - 1)
	if s.class != lockdep.None {
		lockdep.AcquireRead(s, s.class, s.name)
	}
	i := int(s.idx.Load() & 1)
	s.shards[sh].lock[i].Add(1)
	return sh<<1 | i
}

// ReadUnlock leaves the read-side critical section ReadLock returned idx for.
func (s *SRCU) ReadUnlock(idx int) {
	s.shards[idx>>1&(nShards-1)].unlock[idx&1].Add(1)
	if s.class != lockdep.None {
		lockdep.ReleaseRead(s, s.class)
	}
}

// Synchronize waits until every read-side critical section that began
// before the call has ended. It may block for as long as a reader does.
func (s *SRCU) Synchronize() {
	if s.class != lockdep.None {
		lockdep.Wait(s.class, s.name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.idx.Load() & 1
	s.wait(cur ^ 1) // stragglers of the previous grace period
	s.idx.Add(1)
	s.wait(cur)
}

// drained reports whether no reader is inside a section of index i.
func (s *SRCU) drained(i uint32) bool {
	var u, l int64
	for k := range s.shards {
		u += s.shards[k].unlock[i].Load()
	}
	for k := range s.shards {
		l += s.shards[k].lock[i].Load()
	}
	return l == u
}

func (s *SRCU) wait(i uint32) {
	for n := 0; !s.drained(i); n++ {
		switch {
		case n < 16:
			runtime.Gosched()
		default:
			d := time.Duration(n-15) * 20 * time.Microsecond
			if d > time.Millisecond {
				d = time.Millisecond
			}
			time.Sleep(d)
		}
	}
}
