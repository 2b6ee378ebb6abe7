package main

// Jump sites (issue 12): the cost of a hit that never stops the process,
// beside the kernel's uprobes in the same run — per hit (against the
// kernel's emulated and single-stepped cases, and our own trap path for
// reference), hits/s at 1, 2 and 8 threads, and per hit with an `events`
// reader (the trampolines append the events to a ring shared with the
// daemon).

import (
	"cmp"
	"fmt"
	"strings"
	"time"
)

const (
	jumpCalls      = 10_000_000 // calls a per-hit run of a jump site (~10–30 ns a hit: 0.1–0.3 s)
	kernEmulCalls  = 200_000    // of the kernel's emulated case (~0.5–7 µs a hit)
	trapCalls      = 10_000     // of a single-stepped or trap-path case (~5–60 µs a hit)
	jumpThreadHits = 10_000_000 // hits a throughput run of a jump site, over the threads
	kernThreadHits = 500_000    // of the kernel (~1–2 M/s)
)

// evCalls is the calls of a run with an events reader, evPace the ns
// between them: 1.25 M hits/s, for a reader that keeps up to show that it
// gets them all (a workload at full speed, 30 M/s, outruns any reader of
// text lines: its losses are counted, not measured here).
const (
	evCalls = 2000000
	evPace  = 800
)

const jumpHitSection = "Jump sites: per hit, throughput, events (issue 12)"

// jumpFigures is what phaseJumpHit measured, for jumpAnalysis.
var jumpFigures struct {
	prof1, prof2 string // perf summaries of a 1- and a 2-thread jump run
	profReg      string // perf report of the daemon over a registration to jump sites
	lost         uint64 // events the reader lost (counted, "# lost N events")
}

// jcase is one measured variant: tracer t on fn, n calls per thread.
type jcase struct {
	key     string
	t       tracer
	fn      string
	n       int
	threads int
	rate    bool // a throughput figure (hits/s) rather than a per-hit one
	pace    int  // ns between a thread's calls (0: full speed)
	v       value
	evRate  value // readerTracer runs: events received per second
	lost    uint64
}

func phaseJumpHit(e *env) ([]row, error) {
	sec := jumpHitSection
	jf, bin, pending, err := jumpSetup(e, sec, "jump-site figures", "jumphit")
	if pending != nil || err != nil {
		return pending, err
	}
	jump := &modeTracer{tracer: e.fuse, f: jf, mode: "jump"}
	reader := &readerTracer{tracer: e.fuse, f: jf}
	var trap tracer
	trapNote := ""
	if tf, err := startFuseTrap(jf.bin, e.dir); err != nil {
		trapNote = "failed: " + oneLine(err.Error())
		logf("uprobefs mount --trap: %v", err)
	} else {
		defer tf.stop()
		trap = &modeTracer{tracer: guard(trapMount{tf}), f: tf, mode: "trap"}
	}
	cases := []*jcase{
		{key: "jump push", t: jump, fn: "emul_push", n: jumpCalls, threads: 1},
		{key: "kernel push", t: e.kernel, fn: "emul_push", n: kernEmulCalls, threads: 1},
		{key: "trap push", t: trap, fn: "emul_push", n: trapCalls, threads: 1},
		{key: "jump load", t: jump, fn: "slot_load", n: jumpCalls, threads: 1},
		{key: "kernel load", t: e.kernel, fn: "slot_load", n: trapCalls, threads: 1},
		{key: "trap load", t: trap, fn: "slot_load", n: trapCalls, threads: 1},
		{key: "events push", t: reader, fn: "emul_push", n: evCalls, threads: 1, pace: evPace},
	}
	for _, nt := range []int{1, 2, 8} {
		cases = append(cases,
			&jcase{key: fmt.Sprintf("jump t%d", nt), t: jump, fn: "emul_push", n: jumpThreadHits / nt, threads: nt, rate: true},
			&jcase{key: fmt.Sprintf("kernel t%d", nt), t: e.kernel, fn: "emul_push", n: kernThreadHits / nt, threads: nt, rate: true})
	}
	for _, c := range cases {
		switch {
		case c.t == nil && strings.HasPrefix(c.key, "trap "):
			c.v.Note = trapNote
		case c.t == nil:
			c.v.Note = cmp.Or(e.kernelNote, "unavailable")
		}
	}
	for r := 0; r < e.runs && !stopping.Load(); r++ {
		if e.left() < 15*time.Second {
			logf("phase jumphit: %d of %d rounds: time budget", r, e.runs)
			break
		}
		base := map[string]hitRun{} // unprobed runs of this round, by fn/n/threads
		for _, c := range cases {
			if c.v.gaveUp() {
				continue
			}
			bk := fmt.Sprintf("%s/%d/%d/%d", c.fn, c.n, c.threads, c.pace)
			wargs := []string{"hit", c.fn, fmt.Sprint(c.n), fmt.Sprint(c.threads)}
			if c.pace > 0 {
				wargs = append(wargs, fmt.Sprint(c.pace))
			}
			b, ok := base[bk]
			if !ok && !c.rate {
				if b, err = runWorkload(nil, bin, "", "", time.Minute, wargs...); err != nil {
					return nil, fmt.Errorf("baseline %s: %w", bk, err)
				}
				base[bk] = b
			}
			run, err := runCounted(c.t, bin, "jh", c.fn, time.Minute, wargs...)
			if err == nil && c.t == reader {
				ev, lost := reader.counts()
				c.lost += lost
				if ev+lost != run.calls {
					err = fmt.Errorf("events reader: %d events + %d lost != %d calls", ev, lost, run.calls)
				} else {
					c.evRate.S = append(c.evRate.S, float64(ev)/(run.ns/1e9))
				}
			}
			switch {
			case err != nil:
				c.v.fail(err)
			case c.rate:
				c.v.S = append(c.v.S, float64(run.hits)/(run.ns/1e9))
			default:
				c.v.S = append(c.v.S, (run.ns-b.ns)/float64(run.hits))
			}
		}
	}
	if *flagProfile && e.left() > 20*time.Second {
		jumpFigures.prof1 = jumpProfile(e, jump, bin, "emul_push", jumpCalls, 1)
		jumpFigures.prof2 = jumpProfile(e, jump, bin, "emul_push", jumpThreadHits/2, 2)
		logf("jump profiles:\n%s\n%s", jumpFigures.prof1, jumpFigures.prof2)
	}
	rows := jumpHitRows(e, cases)
	for _, c := range cases {
		if c.t == reader {
			jumpFigures.lost = c.lost
		}
	}
	return rows, nil
}

func jumpHitRows(e *env, cases []*jcase) []row {
	sec := jumpHitSection
	by := map[string]*jcase{}
	for _, c := range cases {
		by[c.key] = c
	}
	v := func(k string) value { return by[k].v }
	rows := []row{
		{Section: sec, Name: "per hit, jump site (`push %rbp`) vs the kernel's emulated `push %rbp`", Unit: uNs,
			Ours: v("jump push"), Ref: v("kernel push"), Target: "≤ 0.05× kernel", MaxRatio: 0.05,
			Detail: fmt.Sprintf("`uprobefs mount` as shipped, status checked to show the site \"jump\" before the calls; %d calls a run for the jump site, %d for the kernel, each minus an unprobed run of the same size in the same round; hits (the `hits` file, resp. uprobe_profile) checked equal to calls", jumpCalls, kernEmulCalls)},
		{Section: sec, Name: "per hit, jump site (`mov bias(%rip),%rax`) vs the kernel's single-stepped case", Unit: uNs,
			Ours: v("jump load"), Ref: v("kernel load"),
			Detail: fmt.Sprintf("the kernel single-steps the RIP-relative load out of line; %d calls a run for the jump site, %d for the kernel", jumpCalls, trapCalls)},
		{Section: sec, Name: "per hit, `push %rbp` on the trap path (`uprobefs mount --trap`), for reference", Unit: uNs,
			Ours: v("trap push"), Ref: v("kernel push"),
			Detail: fmt.Sprintf("a second mount with --trap (proc.Options.NoJump), status checked to show \"trap: ...\"; %d calls a run", trapCalls)},
		{Section: sec, Name: "per hit, `mov bias(%rip),%rax` on the trap path (`--trap`), for reference", Unit: uNs,
			Ours: v("trap load"), Ref: v("kernel load")},
		{Section: sec, Name: "per hit, jump site vs our own trap path (`push %rbp`)", Unit: uNs,
			Ours: v("jump push"), Ref: v("trap push"), RefName: "uprobefs --trap"},
	}
	for _, nt := range []int{1, 2, 8} {
		r := row{Section: sec, Name: fmt.Sprintf("hits/s, %d thread(s), jump site (`push %%rbp`) vs the kernel", nt), Unit: uPerSec, Higher: true,
			Ours: v(fmt.Sprintf("jump t%d", nt)), Ref: v(fmt.Sprintf("kernel t%d", nt))}
		if nt == 1 {
			r.Detail = fmt.Sprintf("hits / wall time of the hitting phase; %d hits a run for the jump site, %d for the kernel, split over the threads (2 CPUs)", jumpThreadHits, kernThreadHits)
		}
		if nt == 2 {
			r.Target = minRatioTarget(r, 10)
		}
		rows = append(rows, r)
	}
	for _, i := range []int{1, 4} {
		if x, ok := rows[i].ratio(); ok && x > 0 {
			rows[i].Detail = strings.TrimPrefix(rows[i].Detail+fmt.Sprintf("; ratio %.4f× (1/%.0f)", x, 1/x), "; ")
		}
	}
	ev := by["events push"]
	evRow := row{Section: sec, Name: "per hit with an `events` reader (a jump site appending to the shared ring)", Unit: uNs,
		Ours: ev.v, Ref: v("kernel push"),
		Detail: fmt.Sprintf("`cat events` open on the probe of the default mount (status checked to show \"jump\"); %d calls a run, one every %d ns; events received + \"# lost\" checked equal to calls (%d lost in all); per hit beyond the same paced run unprobed. The kernel's figure is its emulated case with the event enabled, which writes every hit to its trace ring buffer", evCalls, evPace, ev.lost)}
	rate := row{Section: sec, Name: "events/s delivered to an `events` reader (1 thread)", Unit: uPerSec, Higher: true,
		Ours: ev.evRate, Ref: v("kernel t1"),
		Detail: "events received / wall time of the hitting phase; the kernel's figure is its hits/s at 1 thread with the event enabled (each hit a record in its trace buffer)"}
	rate.Target = minValueTarget(rate, 1e6, "≥ 1 M/s")
	return append(rows, evRow, rate)
}

// minRatioTarget is the target cell of a higher-is-better row whose ratio
// must be at least k (report.go's verdicts know only upper bounds).
func minRatioTarget(r row, k float64) string {
	t := fmt.Sprintf("≥ %.0f× kernel", k)
	x, ok := r.ratio()
	switch {
	case !ok:
		return t + " — not measured"
	case x >= k:
		return t + fmt.Sprintf(" — **met** (%.1f×)", x)
	}
	return t + fmt.Sprintf(" — **MISSED by %.2f×** (%.1f× of the %.0f×)", k/x, x, k)
}

// minValueTarget is the target cell of a row whose median must be ≥ min.
func minValueTarget(r row, min float64, t string) string {
	switch {
	case !r.Ours.ok():
		return t + " — not measured"
	case r.Ours.med() >= min:
		return t + " — **met**"
	}
	return t + fmt.Sprintf(" — **MISSED by %.0f×** (%s)", min/r.Ours.med(), fmtVal(r.Unit, r.Ours.med()))
}
