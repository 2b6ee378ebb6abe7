package proc

import (
	"bytes"
	"cmp"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

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
//
// The int3s the run's own installs write (process.install) are deferred:
// each goes into the copy only, and when the run ends the copy is written
// back a page at a time — one read that checks the page's range still
// holds what the copy says it held, one write of the range — instead of a
// write a breakpoint (a thousand breakpoints in a few pages: a few system
// calls, not a thousand). Until then the int3s are not in the process: its
// threads run the original code, as they do until any breakpoint is
// written. Every other write that overlaps a run is made at once, and made
// and copied under the runs' lock, so that a run's write-back never puts
// back bytes older than it: a jump site's jmp, a restored instruction. A
// page whose range does not hold what was expected (the process wrote its
// text meanwhile) gets its int3s one at a time, each where the original
// byte still is. Every write of ours takes the runs' lock (no run may
// start between a write's look for runs and its landing); reads outside
// any run take none. Writes that fall back to PTRACE_POKEDATA are never
// deferred, nor made under the lock.

// maxBatchRead bounds the range a run reads at once.
const maxBatchRead = 1 << 20

// textBatch is one run: the range read and the mapping found there.
type textBatch struct {
	start uint64
	buf   []byte // memory at [start, start+len(buf)) as the run began, and as our writes made it
	m     procfs.Mapping
	mOK   bool
	// defs are the deferred one-byte writes, in the order made: the
	// process still holds old at vaddr.
	defs []deferred
}

// deferred is a one-byte write in a run's copy, not yet in the process.
type deferred struct {
	vaddr  uint64
	old, b byte // what the process holds, what it is to hold
}

// rawMem is the process memory a run is written back to.
type rawMem interface {
	pread(vaddr uint64, p []byte) error
	pwrite(vaddr uint64, p []byte) error
}

// textBatches are a process's runs under way: several at once when
// registrations on different files walk it. Safe for concurrent use.
type textBatches struct {
	mu   sync.Mutex
	runs []*textBatch
	// n is len(runs), read without mu: reads outside any run take no
	// lock (writes do: writeThrough).
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
	// The run's breakpoints join p's history and the ledger's index: room
	// for them at once, not a rehash every doubling.
	p.everMu.Lock()
	if n := len(vaddrs); n >= 2*len(p.everBp)+8 {
		m := make(map[uint64]bpSite, len(p.everBp)+n)
		maps.Copy(m, p.everBp)
		p.everBp = m
	}
	p.everMu.Unlock()
	if led := p.as.w.opts.Ledger; led != nil {
		led.Reserve(p.pid, len(vaddrs))
	}
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
	return func() {
		for _, d := range p.batches.remove(b, p.as) {
			// Its page could not be written back whole: this byte
			// alone, where the process still holds the original.
			var c [1]byte
			if p.as.pread(d.vaddr, c[:]) == nil && c[0] == d.old {
				if err := p.as.WriteMemory(d.vaddr, []byte{d.b}); err != nil && !errors.Is(err, syscall.ESRCH) && !errors.Is(err, syscall.EFAULT) {
					p.as.w.errorf("pid %d: breakpoint at %#x: %v", p.pid, d.vaddr, err)
				}
			}
		}
	}
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

// remove ends the run b: its deferred writes are written back to mem, a
// page at a time (see the top of this file). It returns the deferred
// writes of the pages that could not be written whole, for the caller to
// make one by one.
func (t *textBatches) remove(b *textBatch, mem rawMem) []deferred {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, r := range t.runs {
		if r == b {
			t.runs = append(t.runs[:i], t.runs[i+1:]...)
			break
		}
	}
	t.n.Store(int32(len(t.runs)))
	return b.writeBack(mem)
}

// writeBack writes b's deferred writes to mem, one check and one write a
// page; it returns those of the pages that failed either. Preconditions:
// the runs' lock held.
func (b *textBatch) writeBack(mem rawMem) []deferred {
	defs := b.defs
	b.defs = nil
	slices.SortFunc(defs, func(x, y deferred) int { return cmp.Compare(x.vaddr, y.vaddr) })
	var failed []deferred
	for len(defs) > 0 {
		n := 1
		for n < len(defs) && defs[n].vaddr>>12 == defs[0].vaddr>>12 {
			n++
		}
		page := defs[:n]
		defs = defs[n:]
		lo, hi := page[0].vaddr-b.start, page[n-1].vaddr-b.start+1
		want := slices.Clone(b.buf[lo:hi])
		for _, d := range page {
			want[d.vaddr-b.start-lo] = d.old
		}
		got := make([]byte, len(want))
		if mem.pread(b.start+lo, got) != nil || !bytes.Equal(got, want) || mem.pwrite(b.start+lo, b.buf[lo:hi]) != nil {
			for _, d := range page {
				d.b = b.buf[d.vaddr-b.start]
				failed = append(failed, d)
			}
		}
	}
	return failed
}

// deferByte writes c at vaddr into the copy of a run that covers it, to be
// written back when the run ends, and reports whether one did.
func (t *textBatches) deferByte(vaddr uint64, c byte) bool {
	if t.n.Load() == 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.runs {
		if vaddr >= r.start && vaddr < r.start+uint64(len(r.buf)) {
			r.defs = append(r.defs, deferred{vaddr: vaddr, old: r.buf[vaddr-r.start]})
			t.wroteLocked(vaddr, []byte{c}, false)
			return true
		}
	}
	return false
}

// writeThrough makes a write of p at vaddr (raw writes it) with the runs'
// lock held, the copies updated with it: no run starts, reads its copy or
// writes back in between. It reports false if raw failed (the caller
// writes it its own way, then calls wrote).
func (t *textBatches) writeThrough(vaddr uint64, p []byte, raw func(uint64, []byte) error) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if raw(vaddr, p) != nil {
		return false
	}
	if t.n.Load() > 0 {
		t.wroteLocked(vaddr, p, true)
	}
	return true
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
	t.wroteLocked(vaddr, p, true)
}

// wroteLocked copies p at vaddr into every run's copy it overlaps; made
// (the write is in the process) drops the deferred writes it covers.
func (t *textBatches) wroteLocked(vaddr uint64, p []byte, made bool) {
	for _, r := range t.runs {
		end := r.start + uint64(len(r.buf))
		if vaddr < end && vaddr+uint64(len(p)) > r.start {
			lo, hi := max(vaddr, r.start), min(vaddr+uint64(len(p)), end)
			copy(r.buf[lo-r.start:hi-r.start], p[lo-vaddr:hi-vaddr])
			if made {
				r.defs = slices.DeleteFunc(r.defs, func(d deferred) bool { return d.vaddr >= lo && d.vaddr < hi })
			}
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
