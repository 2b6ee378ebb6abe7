package manager

import (
	"sync"
	"syscall"

	"github.com/uprobefs/uprobefs/core/rmap"
)

// Changes to different files run at once: each holds applyMu for reading
// and its file's lock (the engine registers and unregisters on different
// inodes in parallel, as the seed's design allows); Close holds applyMu
// for writing. The probe limit is kept across files by reservations
// (pending) taken under mu.

// fileLock is the lock of one file's changes, counted by its users.
type fileLock struct {
	mu    sync.Mutex
	users int // under Manager.mu
}

// lockFile takes the change lock of the file key (after applyMu for
// reading); the func it returns lets it go.
func (m *Manager) lockFile(key rmap.InodeKey) func() {
	m.mu.Lock()
	if m.fileLocks == nil {
		m.fileLocks = map[rmap.InodeKey]*fileLock{}
	}
	l := m.fileLocks[key]
	if l == nil {
		l = &fileLock{}
		m.fileLocks[key] = l
	}
	l.users++
	m.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		m.mu.Lock()
		if l.users--; l.users == 0 {
			delete(m.fileLocks, key)
		}
		m.mu.Unlock()
	}
}

// reserve takes room for b's probes under the limit: the probes of every
// file, and the room the changes under way on other files took. The
// reservation is given back by release (at commit, or when b fails).
func (m *Manager) reserve(b *batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	total := m.pending
	for _, f := range m.files {
		total += len(f.probes)
	}
	delta := len(b.adds) - len(b.removes)
	if n := total + delta; n > m.maxProbes {
		return errorf(syscall.ENOSPC, "too many probes: this write would make %d, at most %d are allowed (remove some first)", n, m.maxProbes)
	}
	b.reserved = delta
	m.pending += delta
	return nil
}

// release gives back what is left of b's reservation.
func (m *Manager) release(b *batch) {
	m.mu.Lock()
	m.releaseLocked(b)
	m.mu.Unlock()
}

// releaseLocked gives b's reservation back. Preconditions: mu held.
func (m *Manager) releaseLocked(b *batch) {
	m.pending -= b.reserved
	b.reserved = 0
}
