package objfile

import (
	"os"
	"slices"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestFastLen: the branch scan with the table-driven decoder gives exactly
// the index of the scan with x86asm alone — the same instructions, branch
// targets and sources, indirect jmps and undecodable offsets — on private
// copies of bash, perl, libpython3.11, this test binary (Go) and the jump
// fixture; and fastInsn handles most instructions itself.
func TestFastLen(t *testing.T) {
	exe, _ := os.Executable()
	paths := []string{testfix.CC(t, "testdata/jump.c", "-O2")}
	for _, p := range []string{"/usr/bin/bash", "/usr/bin/perl", libpython, exe} {
		if _, err := os.Stat(p); err == nil {
			paths = append(paths, privateCopy(t, p))
		}
	}
	for _, p := range paths {
		f := openT(t, p)
		fast, slow := f.scanBranches(false), f.scanBranches(true)
		if fast.insns != slow.insns || !slices.Equal(fast.targets, slow.targets) || !slices.Equal(fast.indirect, slow.indirect) ||
			!slices.Equal(fast.bad, slow.bad) {
			t.Errorf("%s: fast scan: %d insns %d branches %d indirect %d bad; x86asm: %d %d %d %d", p,
				fast.insns, len(fast.targets), len(fast.indirect), len(fast.bad), slow.insns, len(slow.targets), len(slow.indirect), len(slow.bad))
			diffFirst(t, f, "targets", fast.targets, slow.targets)
			diffFirst(t, f, "indirect", fast.indirect, slow.indirect)
			diffFirst(t, f, "bad", fast.bad, slow.bad)
			continue
		}
		// Same targets; the sources of equal targets may come in another
		// order, so compare the pairs as sets.
		if !slices.Equal(sortedPairs(fast), sortedPairs(slow)) {
			t.Errorf("%s: branch sources differ", p)
		}
		t.Logf("%s: %d instructions, %d branches: fast %v, x86asm %v", p, fast.insns, len(fast.targets), fast.took, slow.took)
	}
}

func sortedPairs(x *branchIndex) [][2]uint64 {
	ps := make([][2]uint64, len(x.targets))
	for i := range ps {
		ps[i] = [2]uint64{x.targets[i], x.srcs[i]}
	}
	slices.SortFunc(ps, func(a, b [2]uint64) int {
		if a[0] != b[0] {
			return int(int64(a[0]-b[0])>>63 | 1)
		}
		if a[1] == b[1] {
			return 0
		}
		return int(int64(a[1]-b[1])>>63 | 1)
	})
	return ps
}

func diffFirst(t *testing.T, f *File, what string, a, b []uint64) {
	t.Helper()
	for i := 0; i < len(a) || i < len(b); i++ {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			var x, y uint64
			if i < len(a) {
				x = a[i]
			}
			if i < len(b) {
				y = b[i]
			}
			var buf [16]byte
			f.readAt(buf[:], min(x, y))
			t.Errorf("%s: first difference at %d: fast %#x, x86asm %#x (bytes at %#x: % x)", what, i, x, y, min(x, y), buf)
			return
		}
	}
}
