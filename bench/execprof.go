package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The exec profile: where uprobefs's exec hold goes, from the daemon's own
// counters (.uprobefs/stats, exec_*: core/proc's Stats), read before and
// after each round of probed execs.

// statser is a tracer whose daemon counts its work.
type statser interface {
	stats() (map[string]int64, error)
}

// stats reads the mount's .uprobefs/stats ("key value" lines).
func (f *fuseTracer) stats() (map[string]int64, error) {
	b, err := os.ReadFile(filepath.Join(f.mnt, controlDir, "stats"))
	if err != nil {
		return nil, err
	}
	m, err := pairs(strings.Split(strings.TrimSpace(string(b)), "\n"), " ")
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	return m, nil
}

// execSteps are the exec profile's steps: the stats key of the time spent
// (the count that goes with it is per exec: "execs"), the row's name.
var execSteps = []struct{ key, name string }{
	{"exec_fanotify_ns", "daemon: the exec held in fanotify (tracer woken, process seized), per exec"},
	{"exec_attach_ns", "daemon: the exec event (process built, maps read, breakpoints and r_brk written), per exec"},
	{"exec_loader_ns", "daemon: the loader's r_brk traps until its libraries are in, per exec"},
	{"exec_switch_ns", "daemon: a switch to jump sites while the loader runs (threads stopped, region mapped by injected system calls, jmps written), per exec"},
}

// execProfile accumulates the per-exec time of each step over rounds.
type execProfile struct {
	steps           []value
	execs, switches int64
	traps           int64
}

// round adds one round's difference of the daemon's counters.
func (p *execProfile) round(before, after map[string]int64) {
	n := after["execs"] - before["execs"]
	if n <= 0 {
		return
	}
	if p.steps == nil {
		p.steps = make([]value, len(execSteps))
	}
	for i, s := range execSteps {
		p.steps[i].S = append(p.steps[i].S, float64(after[s.key]-before[s.key])/float64(n))
	}
	p.execs += n
	p.switches += after["exec_switches"] - before["exec_switches"]
	p.traps += after["exec_loader_traps"] - before["exec_loader_traps"]
}

// rows are the profile's rows of the exec section (none without samples).
func (p *execProfile) rows(sec string) []row {
	if p.steps == nil {
		return nil
	}
	var rs []row
	for i, s := range execSteps {
		r := row{Section: sec, Name: s.name, Unit: uNs, Ours: p.steps[i], Ref: value{Note: "—"}}
		switch s.key {
		case "exec_fanotify_ns":
			r.Detail = "from uprobefs's own exec profile (.uprobefs/stats exec_*), read before and after each round of probed execs: the tracer's time in each step, the waits between steps (a trap reaching the tracer, wake-ups) in none"
		case "exec_loader_ns":
			r.Detail = fmt.Sprintf("%d traps in %d execs", p.traps, p.execs)
		case "exec_switch_ns":
			r.Detail = fmt.Sprintf("a switch while the loader ran in %d of %d execs (averaged over all execs): a new image's sites become jump sites at their first hit, after main here", p.switches, p.execs)
		}
		rs = append(rs, r)
	}
	return rs
}

// say sums up the profile against the added latency (ns, median) for the
// analysis.
func (p *execProfile) say(added float64) string {
	if p.steps == nil {
		return ""
	}
	var parts []string
	sum := 0.0
	for i, s := range execSteps {
		m := p.steps[i].med()
		sum += m
		what := strings.TrimSuffix(strings.TrimPrefix(s.name, "daemon: "), ", per exec")
		parts = append(parts, fmt.Sprintf("%s %s", what, fmtVal(uNs, m)))
	}
	return fmt.Sprintf("In this run, per exec (medians of the daemon's exec profile): %s; %s in all, of %s added: the rest (%s) is the waiting between them — the loader's traps reaching the tracer, the tracer's and the process's wake-ups. ",
		strings.Join(parts, "; "), fmtVal(uNs, sum), fmtVal(uNs, added), fmtVal(uNs, added-sum))
}
