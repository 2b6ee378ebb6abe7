package fetch

import (
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

func TestHistString(t *testing.T) {
	var h Hist
	if got := h.String(); got != "count 0\n" {
		t.Errorf("empty: %q", got)
	}
	// 1 of 600 ns, 4 in [1K, 2K), none in [2K, 4K), 2 in [4K, 8K), 1 of 1 s.
	for _, d := range []time.Duration{600, 1024, 1500, 2000, 2047, 4096, 8191} {
		h.Add(d)
	}
	want := "" +
		"[512, 1K)              1 |@@@@@@@@@@@@@                                       |\n" +
		"[1K, 2K)               4 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n" +
		"[2K, 4K)               0 |                                                    |\n" +
		"[4K, 8K)               2 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |\n" +
		"count 7, min 600, mean 2779, max 8191 (ns)\n"
	if got := h.String(); got != want {
		t.Errorf("String:\n%s\nwant:\n%s", got, want)
	}
	st := h.Stats()
	if st != (HistStats{Count: 7, Min: 600, Mean: (600 + 1024 + 1500 + 2000 + 2047 + 4096 + 8191) / 7, Max: 8191}) {
		t.Errorf("Stats = %+v", st)
	}
}

func TestHistBuckets(t *testing.T) {
	var h Hist
	// Each duration and the bucket it belongs to.
	cases := []struct {
		ns     uint64
		bucket int
	}{
		{0, 0}, {1, 1}, {2, 2}, {3, 2}, {4, 3}, {7, 3}, {1023, 10}, {1024, 11},
		{1<<20 - 1, 20}, {1 << 20, 21}, {1 << 30, 31}, {1 << 63, 64}, {math.MaxUint64, 64},
	}
	for _, c := range cases {
		h.AddNS(c.ns)
	}
	b := h.Buckets()
	want := [histBuckets]uint64{}
	for _, c := range cases {
		want[c.bucket]++
	}
	if b != want {
		t.Errorf("Buckets = %v, want %v", b, want)
	}
	s := h.String()
	for _, label := range []string{"[0]  ", "[1]  ", "[2, 4)", "[512, 1K)", "[1K, 2K)", "[512K, 1M)",
		"[1M, 2M)", "[1G, 2G)", "[8E, 16E)", "[4E, 8E)"} {
		if !strings.Contains(s, "\n"+label) && !strings.HasPrefix(s, label) {
			t.Errorf("no line %q in\n%s", label, s)
		}
	}
	// The mean of huge durations needs more than 64 bits of sum.
	st := h.Stats()
	if st.Min != 0 || st.Max != math.MaxUint64 || st.Count != uint64(len(cases)) {
		t.Errorf("Stats = %+v", st)
	}
	var big Hist
	big.AddNS(math.MaxUint64)
	big.AddNS(math.MaxUint64 - 2)
	if m := big.Stats().Mean; m != math.MaxUint64-1 {
		t.Errorf("mean of two near-2^64 durations = %d", m)
	}
	var neg Hist
	neg.Add(-time.Second)
	if neg.Buckets()[0] != 1 || neg.Stats().Max != 0 {
		t.Errorf("a negative duration: %+v", neg.Stats())
	}
}

// TestHistConcurrent adds from several goroutines (under -race) while
// others read, and checks that no addition is lost.
func TestHistConcurrent(t *testing.T) {
	var h Hist
	const workers, per = 8, 5000
	var wg sync.WaitGroup
	stopReaders := testfix.Spin(2, func(int) { _ = h.String() })
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				h.AddNS(uint64(w*per + i))
			}
		}()
	}
	wg.Wait()
	stopReaders()
	st := h.Stats()
	n := uint64(workers * per)
	if st.Count != n || st.Min != 0 || st.Max != n-1 || st.Mean != (n-1)/2 {
		t.Errorf("Stats = %+v, want count %d, min 0, max %d, mean %d", st, n, n-1, (n-1)/2)
	}
	var total uint64
	for _, c := range h.Buckets() {
		total += c
	}
	if total != n {
		t.Errorf("buckets hold %d, want %d", total, n)
	}
}
