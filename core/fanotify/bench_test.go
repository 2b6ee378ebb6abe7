package fanotify

import (
	"os"
	"runtime"
	"slices"
	"testing"
	"time"
)

// BenchmarkExec measures fork+exec+exit+wait of a tiny program, unmarked
// and marked for exec with a no-op Handler (the held path: read the event,
// fstat and readlink its fd, a goroutine, the answer). Each iteration runs
// one of each, interleaved, so that load from elsewhere hits both alike.
// The children are this process's os.StartProcess (vfork) children, so the
// Watcher holds them with HoldOwnChildren, one at a time. Reports the
// medians (ns) of both and of the paired difference.
func BenchmarkExec(b *testing.B) {
	requireAvailable(b)
	if runtime.GOMAXPROCS(0) < 2 {
		b.Skip("needs GOMAXPROCS >= 2")
	}
	w, err := New(func(Event) {}, Options{HoldOwnChildren: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close() })
	unmarked := fixture(b, "testdata/nop.c", "-O2")
	marked := fixture(b, "testdata/nop.c", "-O2")
	if err := w.Add(marked, true); err != nil {
		b.Fatal(err)
	}
	attr := &os.ProcAttr{}
	run := func(bin string) time.Duration {
		t0 := time.Now()
		p, err := os.StartProcess(bin, []string{bin}, attr)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Wait(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	before := w.Stats().Handled
	var du, dm, dd []time.Duration
	for b.Loop() {
		u := run(unmarked)
		m := run(marked)
		du, dm, dd = append(du, u), append(dm, m), append(dd, m-u)
	}
	median := func(ds []time.Duration) float64 {
		slices.Sort(ds)
		return float64(ds[len(ds)/2].Nanoseconds())
	}
	b.ReportMetric(median(du), "unmarked-median-ns")
	b.ReportMetric(median(dm), "marked-median-ns")
	b.ReportMetric(median(dd), "overhead-median-ns")
	if held := w.Stats().Handled - before; held != uint64(len(dm)) {
		b.Errorf("%d execs held, want %d", held, len(dm))
	}
}
