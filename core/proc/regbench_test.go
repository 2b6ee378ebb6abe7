package proc

import (
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// BenchmarkWatchFleet measures Watch + Register (and Unregister + Unwatch)
// of one probe on a binary mapped by 500 sleeping processes (the bench's
// `workload fleet 500`), in ns per registration.
func BenchmarkWatchFleet(b *testing.B) {
	bin := testfix.Copy(b, buildOnce(b, "../../../bench/testdata/workload", "-O2", "-pthread"))
	f := startFixture(b, bin, "fleet", "500")
	line, err := f.readLine(60 * time.Second)
	if err != nil || !strings.HasPrefix(line, "ready") {
		b.Fatalf("fleet: %q %v", line, err)
	}
	e := newEnv(b, Options{Log: func(string, ...any) {}})
	var reg, unreg time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		p := e.register(bin, "emul_push")
		reg += time.Since(t0)
		t0 = time.Now()
		e.unregister(p)
		e.w.Unwatch(p.in)
		delete(e.watched, p.in.Key)
		unreg += time.Since(t0)
	}
	b.ReportMetric(float64(reg.Nanoseconds())/float64(b.N), "reg-ns")
	b.ReportMetric(float64(unreg.Nanoseconds())/float64(b.N), "unreg-ns")
}
