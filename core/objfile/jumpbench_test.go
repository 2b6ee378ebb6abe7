package objfile

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

const libpython = "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"

// privateCopy copies path into a temp dir of tb (skipping if it is absent).
func privateCopy(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Skipf("%s: %v", path, err)
	}
	out := filepath.Join(tb.TempDir(), filepath.Base(path))
	if err := os.WriteFile(out, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return out
}

// BenchmarkJumpScan measures Open and the whole-file branch scan of a
// private copy of libpython3.11 (the first JumpAt of a File pays the scan
// once; scan-ms is the scan alone).
func BenchmarkJumpScan(b *testing.B) {
	path := privateCopy(b, libpython)
	var insns, branches int
	var scan time.Duration
	n := 0
	for b.Loop() {
		f, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		var took time.Duration
		insns, branches, _, took = f.ScanStats()
		scan += took
		n++
		f.Close()
	}
	b.ReportMetric(float64(insns), "insns")
	b.ReportMetric(float64(branches), "branches")
	b.ReportMetric(float64(scan.Milliseconds())/float64(n), "scan-ms")
}

// BenchmarkJumpAt measures JumpAt of every function entry of libpython
// after the scan (the per-probe cost).
func BenchmarkJumpAt(b *testing.B) {
	path := privateCopy(b, libpython)
	f := openT(b, path)
	f.ScanStats()
	var offs []uint64
	for _, s := range f.syms {
		offs = append(offs, s.off)
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		f.JumpAt(offs[i%len(offs)])
		i++
	}
}
