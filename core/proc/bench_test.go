package proc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/kuprobe"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// benchCase is a probed instruction of the work fixture.
type benchCase struct{ name, funcs, loc string }

var benchCases = []benchCase{
	{"emulated-push", "p", "f_push"},
	{"emulated-endbr64", "e", "f_endbr"},
	{"emulated-call", "c", "f_call"},
	{"slot-riprel-load", "l", "f_load"},
	{"slot-imul", "i", "f_imul"},
}

// timedRun runs the work fixture in time mode and returns the duration of
// its work. The fixture is started through the relay; before lets the
// caller arm probes once its pid is known.
func timedRun(b *testing.B, bin string, n int, funcs string, before func(f *fixture)) time.Duration {
	b.Helper()
	f := startFixture(b, bin, fmt.Sprint(n), "1", funcs, "time")
	if before != nil {
		before(f)
	}
	f.Go()
	out, code := f.Wait(10 * time.Minute)
	if code != 0 {
		b.Fatalf("exit %d: %s", code, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "ns "); ok {
			ns, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return time.Duration(ns)
		}
	}
	b.Fatalf("no time in %q", out)
	return 0
}

// BenchmarkWorldHit measures the cost of one hit: ours (with the tracer
// left to the scheduler, and following the tracee's CPU) and the kernel's
// uprobe on the same fixture offset, each as (probed run - unprobed
// run)/hits, in ns/hit. Ours also reports the HitProfile breakdown. Use a
// fixed count: -benchtime=20000x.
func BenchmarkWorldHit(b *testing.B) {
	src := buildOnce(b, "work", "-O2", "-pthread")
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			bin := testfix.Copy(b, src)
			off, err := resolveIn(b, bin, c.loc)
			if err != nil {
				b.Fatal(err)
			}
			b.Run("kernel", func(b *testing.B) {
				if err := kuprobe.Available(); err != nil {
					b.Skipf("kernel uprobes: %v", err)
				}
				base := timedRun(b, bin, b.N, c.funcs, nil)
				kp, err := kuprobe.Add(fmt.Sprintf("uprobefs_bench_%d", os.Getpid()), bin, off)
				if err != nil {
					b.Skipf("kernel uprobe: %v", err)
				}
				defer kp.Remove()
				if err := kp.Enable(); err != nil {
					b.Skipf("kernel uprobe: %v", err)
				}
				b.ResetTimer()
				d := timedRun(b, bin, b.N, c.funcs, nil)
				b.StopTimer()
				hits, _ := kp.Hits()
				if hits != uint64(b.N) {
					b.Errorf("kernel counted %d hits, want %d", hits, b.N)
				}
				b.ReportMetric(float64((d-base).Nanoseconds())/float64(b.N), "ns/hit")
			})
			for _, pl := range []Placement{PlaceNone, PlaceFollow} {
				name := map[Placement]string{PlaceNone: "ours-none", PlaceFollow: "ours-follow"}[pl]
				b.Run(name, func(b *testing.B) {
					base := timedRun(b, bin, b.N, c.funcs, nil)
					prof := &HitProfile{}
					e := newEnv(b, Options{Placement: pl, Profile: prof, Log: func(string, ...any) {}})
					var p *probe
					b.ResetTimer()
					d := timedRun(b, bin, b.N, c.funcs, func(f *fixture) {
						p = e.register(bin, c.loc)
						prof.Reset()
					})
					b.StopTimer()
					if p.c.Hits() != uint64(b.N) {
						b.Errorf("counted %d hits, want %d", p.c.Hits(), b.N)
					}
					s := prof.Snapshot()
					b.ReportMetric(float64((d-base).Nanoseconds())/float64(b.N), "ns/hit")
					if s.Hits > 0 {
						per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(s.Hits) }
						b.ReportMetric(per(s.Away), "away-ns/hit")
						b.ReportMetric(per(s.Reap+s.Decode+s.Step+s.Resume), "tracer-ns/hit")
						b.Logf("%s: %s", name, s)
					}
				})
			}
		})
	}
}
