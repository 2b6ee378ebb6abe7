package fetch

import (
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"time"
)

// histBuckets is the number of log2 buckets of a Hist: [0], [1], then
// [2^(k-1), 2^k) for k = 2..64.
const histBuckets = 65

// barWidth is the width of a bar, as bpftrace's (52 '@' at the largest
// bucket).
const barWidth = 52

// Hist is a latency histogram: durations in nanoseconds counted in log2
// buckets, with their count, minimum, mean and maximum, printed as
// bpftrace's hist() prints a map. The zero Hist is empty and ready; a Hist
// must not be copied after its first use. Add and the readers are safe for
// concurrent use.
type Hist struct {
	// mu guards every field below.
	mu           sync.Mutex
	buckets      [histBuckets]uint64
	count        uint64
	min, max     uint64
	sumHi, sumLo uint64 // the 128-bit sum of every duration
}

// HistStats is a Hist's summary: Count durations from Min to Max ns, their
// Mean (rounded down). All are 0 for an empty Hist.
type HistStats struct {
	Count, Min, Mean, Max uint64
}

// Add counts a duration. A negative one (a monotonic clock never gives
// one) counts as 0.
func (h *Hist) Add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.AddNS(uint64(d))
}

// AddNS counts a duration of ns nanoseconds.
func (h *Hist) AddNS(ns uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buckets[bits.Len64(ns)]++
	if h.count == 0 || ns < h.min {
		h.min = ns
	}
	if ns > h.max {
		h.max = ns
	}
	h.count++
	var carry uint64
	h.sumLo, carry = bits.Add64(h.sumLo, ns, 0)
	h.sumHi += carry
}

// Stats returns the Hist's summary.
func (h *Hist) Stats() HistStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.statsLocked()
}

// Preconditions: h.mu is held.
func (h *Hist) statsLocked() HistStats {
	if h.count == 0 {
		return HistStats{}
	}
	// The mean is at most max < 2^64, so sumHi < count: Div64 cannot
	// overflow.
	mean, _ := bits.Div64(h.sumHi, h.sumLo, h.count)
	return HistStats{Count: h.count, Min: h.min, Mean: mean, Max: h.max}
}

// Buckets returns the count of each bucket: index 0 counts 0 ns, index 1
// counts 1 ns, index k >= 2 counts [2^(k-1), 2^k) ns.
func (h *Hist) Buckets() [histBuckets]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buckets
}

// String returns the histogram as bpftrace prints hist(): one line per
// bucket from the lowest to the highest non-empty one (empty ones between
// included), its range in ns ("[1K, 2K)": K, M, G, T, P, E are powers of
// 1024) left-aligned in 16 columns, its count right-aligned in 8, and a bar
// of '@' scaled to 52 at the largest count; then a line
// "count N, min MIN, mean MEAN, max MAX (ns)". An empty Hist is the last
// line alone, "count 0".
func (h *Hist) String() string {
	h.mu.Lock()
	buckets := h.buckets
	st := h.statsLocked()
	h.mu.Unlock()

	var b strings.Builder
	lo, hi, top := -1, -1, uint64(0)
	for i, n := range buckets {
		if n == 0 {
			continue
		}
		if lo < 0 {
			lo = i
		}
		hi = i
		top = max(top, n)
	}
	for i := lo; lo >= 0 && i <= hi; i++ {
		var label string
		switch i {
		case 0:
			label = "[0]"
		case 1:
			label = "[1]"
		default:
			label = "[" + powerLabel(i-1) + ", " + powerLabel(i) + ")"
		}
		b.WriteString(label)
		if len(label) < 16 {
			b.WriteString(strings.Repeat(" ", 16-len(label)))
		}
		n := strconv.FormatUint(buckets[i], 10)
		if len(n) < 8 {
			b.WriteString(strings.Repeat(" ", 8-len(n)))
		}
		b.WriteString(n)
		w := int(float64(buckets[i]) / float64(top) * barWidth)
		b.WriteString(" |")
		b.WriteString(strings.Repeat("@", w))
		b.WriteString(strings.Repeat(" ", barWidth-w))
		b.WriteString("|\n")
	}
	if st.Count == 0 {
		b.WriteString("count 0\n")
		return b.String()
	}
	b.WriteString("count " + strconv.FormatUint(st.Count, 10) +
		", min " + strconv.FormatUint(st.Min, 10) +
		", mean " + strconv.FormatUint(st.Mean, 10) +
		", max " + strconv.FormatUint(st.Max, 10) + " (ns)\n")
	return b.String()
}

// powerLabel is bpftrace's hist_index_label: 2^p with the suffix of the
// largest power of 1024 it holds ("1K", "512", "16E").
func powerLabel(p int) string {
	decade := p / 10
	s := strconv.FormatUint(1<<(p-10*decade), 10)
	if decade > 0 {
		s += "KMGTPE"[decade-1 : decade]
	}
	return s
}
