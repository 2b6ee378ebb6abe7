package proc

import (
	"sync"
	"sync/atomic"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Runs of breakpoint writes (the engine's EngineOptions.Batch: a batch of
// registrations, or a new VMA's MmapHook): the checked write path
// (breakpoints.go) makes three system calls a breakpoint — a PROCMAP_QUERY
// that the address still maps the file, a read of the instruction, the
// one-byte write. Within a run, all inside one VMA and under its MM's
// mmap_sem, the mapping is asked once and the range read once; the
// one-byte writes remain. The check is then as old as the run (a few
// milliseconds at most for a thousand breakpoints) rather than as old as
// one write: the process could unmap the range in between either way,
// since the check and the write are never atomic against the process.
//
// Every write of ours into the process goes through addressSpace
// (WriteMemory), which keeps the read copies of the runs up to date; a
// process writing its own text during a run is not seen (as it is not
// between a check and a write).

// maxBatchRead bounds the range a run reads at once.
const maxBatchRead = 1 << 20

// textBatch is one run: the range read and the mapping found there.
type textBatch struct {
	start uint64
	buf   []byte // memory at [start, start+len(buf)) as the run began
	m     procfs.Mapping
	mOK   bool
}

// textBatches are a process's runs under way: several at once when
// registrations on different files walk it. Safe for concurrent use.
type textBatches struct {
	mu   sync.Mutex
	runs []*textBatch
	// n is len(runs), read without mu: the reads and writes outside any
	// run (all but registrations) take no lock.
	n atomic.Int32
}

// batchHook is the engine's EngineOptions.Batch for this world's
// processes. Preconditions: v.MM.MmapSem held.
func batchHook(v *rmap.VMA, vaddrs []uint64) func() {
	p := procOf(v.MM)
	if p == nil || len(vaddrs) == 0 {
		return func() {}
	}
	lo, hi := vaddrs[0], vaddrs[0]
	for _, a := range vaddrs {
		lo, hi = min(lo, a), max(hi, a)
	}
	hi = min(hi+install.MaxInsnLen, v.End)
	b := &textBatch{start: lo}
	if m, err := p.maps.query(p.procPid(), lo); err == nil {
		b.m, b.mOK = m, true
	}
	p.batches.add(b, func() []byte {
		if hi <= lo || hi-lo > maxBatchRead {
			return nil
		}
		buf := make([]byte, hi-lo)
		if p.as.pread(lo, buf) != nil {
			return nil
		}
		return buf
	})
	return func() { p.batches.remove(b) }
}

// add makes b a run under way, its copy read by fill. The run is counted
// before the read and the copy set before mu is let go: a write of ours
// that lands after the read finds the run (n) and waits for mu to update
// the copy; one that landed before is in what fill read.
func (t *textBatches) add(b *textBatch, fill func() []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.runs = append(t.runs, b)
	t.n.Store(int32(len(t.runs)))
	b.buf = fill()
}

func (t *textBatches) remove(b *textBatch) {
	t.mu.Lock()
	for i, r := range t.runs {
		if r == b {
			t.runs = append(t.runs[:i], t.runs[i+1:]...)
			break
		}
	}
	t.n.Store(int32(len(t.runs)))
	t.mu.Unlock()
}

// read copies memory at vaddr into p from a run's copy and reports whether
// one covered all of it.
func (t *textBatches) read(vaddr uint64, p []byte) bool {
	if t.n.Load() == 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.runs {
		if vaddr >= r.start && vaddr+uint64(len(p)) <= r.start+uint64(len(r.buf)) {
			copy(p, r.buf[vaddr-r.start:])
			return true
		}
	}
	return false
}

// wrote updates the runs' copies after a write of p at vaddr.
func (t *textBatches) wrote(vaddr uint64, p []byte) {
	if t.n.Load() == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.runs {
		end := r.start + uint64(len(r.buf))
		if vaddr < end && vaddr+uint64(len(p)) > r.start {
			lo, hi := max(vaddr, r.start), min(vaddr+uint64(len(p)), end)
			copy(r.buf[lo-r.start:hi-r.start], p[lo-vaddr:hi-vaddr])
		}
	}
}

// mapping returns the mapping a run found covering vaddr.
func (t *textBatches) mapping(vaddr uint64) (procfs.Mapping, bool) {
	if t.n.Load() == 0 {
		return procfs.Mapping{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.runs {
		if r.mOK && vaddr >= r.m.Start && vaddr < r.m.End {
			return r.m, true
		}
	}
	return procfs.Mapping{}, false
}
