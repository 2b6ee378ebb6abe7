package integration

import (
	"strings"
	"testing"
)

// TestJumpRegionReuse: a process whose only probe is registered and
// removed 10 times is attached and let go 10 times; its trampoline regions
// can never be unmapped (jump.go), so a new attach must find and reuse the
// one it has (a site registered again gets its old trampoline back) rather
// than map another: at most one region (its two mappings, code and
// counters) after all cycles, and the counts exact in each.
func TestJumpRegionReuse(t *testing.T) {
	d, P, j := startJumpRig(t)
	const T, N, K = 8, 1000, 10
	var counts []int
	var last []string
	for range K {
		d.probeJump(P, "j_func", j)
		j.batch(T, N)
		d.wantHits(P+"/j_func", T*N)
		d.must("rmdir " + P + "/j_func")
		j.fx().waitUntraced()
		last = jumpMaps(t, j.pid())
		counts = append(counts, len(last))
	}
	j.finish()
	if counts[K-1] > 2 {
		t.Fatalf("trampoline mappings after each of %d attach/detach cycles: %v (want at most 2: one region, reused); at the end:\n%s",
			K, counts, strings.Join(last, "\n"))
	}
}
