package proc

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// BenchmarkWatchFleet measures Watch + Register (and Unregister + Unwatch)
// of one probe on a binary mapped by 500 ($UFS_FLEET) sleeping processes (the bench's
// `workload fleet 500`), in ns per registration.
func BenchmarkWatchFleet(b *testing.B) {
	bin := testfix.Copy(b, buildOnce(b, "../../../bench/testdata/workload", "-O2", "-pthread"))
	f := startFixture(b, bin, "fleet", fleetN())
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

// BenchmarkRegister1000 measures 1,000 probes registered (and removed) on
// a file 100 processes map, 100,000 breakpoint writes, in ns per
// breakpoint: one Register at a time (one), and in one RegisterMany (many,
// as the manager registers one write's lines).
func BenchmarkRegister1000(b *testing.B) {
	bin := testfix.Glob(b)
	fs := startFixtures(b, 100, bin, "wait")
	for _, f := range fs {
		if line, err := f.readLine(30 * time.Second); err != nil || line != "ready\n" {
			b.Fatalf("waiter: %q %v", line, err)
		}
	}
	e := newEnv(b, Options{Log: func(string, ...any) {}})
	var ps []*probe
	for i := range 1000 {
		ps = append(ps, e.register(bin, fmt.Sprintf("many_%d", i)))
	}
	for _, p := range ps {
		e.unregister(p)
	}
	var regs []probes.Registration
	var unregs []probes.Unregistration
	for _, p := range ps {
		regs = append(regs, probes.Registration{Off: p.off, Insn: p.plan.Insn, Arch: p.plan, C: p.c})
		unregs = append(unregs, probes.Unregistration{Off: p.off, C: p.c})
	}
	for _, many := range []bool{false, true} {
		b.Run(map[bool]string{false: "one", true: "many"}[many], func(b *testing.B) {
			var reg, unreg time.Duration
			for range b.N {
				t0 := time.Now()
				if many {
					if err := e.eng.RegisterMany(ps[0].in, regs); err != nil {
						b.Fatal(err)
					}
				} else {
					for _, p := range ps {
						if err := e.eng.Register(p.in, p.off, p.plan.Insn, p.plan, p.c); err != nil {
							b.Fatal(err)
						}
					}
				}
				reg += time.Since(t0)
				t0 = time.Now()
				if many {
					if err := e.eng.UnregisterMany(ps[0].in, unregs); err != nil {
						b.Fatal(err)
					}
				} else {
					for _, p := range ps {
						e.unregister(p)
					}
				}
				unreg += time.Since(t0)
			}
			b.ReportMetric(float64(reg.Nanoseconds())/float64(b.N)/1e5, "reg-ns/bp")
			b.ReportMetric(float64(unreg.Nanoseconds())/float64(b.N)/1e5, "unreg-ns/bp")
		})
	}
}

// fleetN is the size of BenchmarkWatchFleet's fleet: $UFS_FLEET, else 500.
func fleetN() string {
	if n := os.Getenv("UFS_FLEET"); n != "" {
		return n
	}
	return "500"
}
