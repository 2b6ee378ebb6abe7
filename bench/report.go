package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

// unit says how a row's samples are shown.
type unit int

const (
	uNs     unit = iota // samples in ns, shown as ns/µs/ms
	uPerSec             // hits per second
	uPct                // percent
	uKiB                // KiB
	uCount              // plain number
	uShare              // a share in percent, higher is better (MinValue)
)

// value is the samples of one figure, or why there are none.
type value struct {
	S     []float64
	Note  string   // why there are no samples: "pending: ...", "unavailable: ...", "skipped: ..."
	Fails []string // runs that failed (the samples are the runs that did not)
}

// fail records a failed run.
func (v *value) fail(err error) { v.Fails = append(v.Fails, oneLine(err.Error())) }

// gaveUp says to stop trying: no samples wanted, or two runs failed.
func (v *value) gaveUp() bool { return v.Note != "" || len(v.Fails) >= 2 }

func (v value) ok() bool { return len(v.S) > 0 }

func (v value) sorted() []float64 {
	s := append([]float64(nil), v.S...)
	sort.Float64s(s)
	return s
}

func (v value) med() float64 {
	s := v.sorted()
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func (v value) min() float64 { return v.sorted()[0] }
func (v value) max() float64 { s := v.sorted(); return s[len(s)-1] }

// row is one line of the results table: uprobefs beside the kernel (or,
// for engine rows, beside a reference implementation).
type row struct {
	Section string
	Name    string
	Unit    unit
	Higher  bool // a higher value is better (throughput)
	Ours    value
	Ref     value
	RefName string // "kernel" unless said otherwise
	// Target: ours/ref must be <= MaxRatio (or, for uPct rows and uNs
	// rows without MaxRatio, Ours <= MaxValue); empty Target means none.
	Target   string
	MaxRatio float64
	MaxValue float64
	MinValue float64 // uShare rows: Ours must be >= MinValue
	Detail   string  // a note printed under the table
}

func fmtVal(u unit, x float64) string {
	switch u {
	case uNs:
		switch {
		case math.Abs(x) >= 1e9:
			return fmt.Sprintf("%.2f s", x/1e9)
		case math.Abs(x) >= 1e6:
			return fmt.Sprintf("%.2f ms", x/1e6)
		case math.Abs(x) >= 1e4:
			return fmt.Sprintf("%.1f µs", x/1e3)
		case math.Abs(x) >= 1e3:
			return fmt.Sprintf("%.2f µs", x/1e3)
		default:
			return fmt.Sprintf("%.1f ns", x)
		}
	case uPerSec:
		switch {
		case x >= 1e6:
			return fmt.Sprintf("%.2f M/s", x/1e6)
		case x >= 1e3:
			return fmt.Sprintf("%.1f k/s", x/1e3)
		default:
			return fmt.Sprintf("%.0f /s", x)
		}
	case uPct:
		return fmt.Sprintf("%+.2f %%", x)
	case uShare:
		return fmt.Sprintf("%.1f %%", x)
	case uKiB:
		if x >= 10*1024 {
			return fmt.Sprintf("%.1f MiB", x/1024)
		}
		return fmt.Sprintf("%.0f KiB", x)
	default:
		return fmt.Sprintf("%.0f", x)
	}
}

func (r row) cell(v value) string {
	if !v.ok() {
		if v.Note == "" && len(v.Fails) > 0 {
			return fmt.Sprintf("FAILED (%d runs): %s", len(v.Fails), v.Fails[0])
		}
		return v.Note
	}
	var s string
	if len(v.S) == 1 {
		s = fmtVal(r.Unit, v.S[0]) + " (n=1)"
	} else {
		s = fmt.Sprintf("%s [%s – %s]", fmtVal(r.Unit, v.med()), fmtVal(r.Unit, v.min()), fmtVal(r.Unit, v.max()))
	}
	if len(v.Fails) > 0 {
		s += fmt.Sprintf(" (n=%d; %d run(s) FAILED, see notes)", len(v.S), len(v.Fails))
	}
	return s
}

// failNotes lists the failed runs of a row.
func (r row) failNotes() []string {
	var n []string
	for _, x := range []struct {
		who string
		v   value
	}{{"uprobefs", r.Ours}, {r.refName(), r.Ref}} {
		if len(x.v.Fails) > 0 {
			n = append(n, fmt.Sprintf("%s: %d of %d runs FAILED: %s", x.who, len(x.v.Fails), len(x.v.Fails)+len(x.v.S), strings.Join(dedup(x.v.Fails), " / ")))
		}
	}
	return n
}

func dedup(ss []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func (r row) ratio() (float64, bool) {
	if !r.Ours.ok() || !r.Ref.ok() || r.Unit == uPct {
		return 0, false
	}
	rm, om := r.Ref.med(), r.Ours.med()
	if rm <= 0 || om < 0 {
		return 0, false // a ratio of differences around zero means nothing
	}
	return om / rm, true
}

func (r row) ratioCell() string {
	x, ok := r.ratio()
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.2f×", x)
}

// verdict says whether the target is met: "", "met", or "MISSED ...".
func (r row) verdict() string {
	if r.Target == "" {
		return ""
	}
	if r.MaxRatio > 0 {
		x, ok := r.ratio()
		if !ok {
			return "not measured"
		}
		if x <= r.MaxRatio {
			return "met"
		}
		return fmt.Sprintf("MISSED by %.2f× (%.0f %% over)", x/r.MaxRatio, (x/r.MaxRatio-1)*100)
	}
	if r.Unit == uShare {
		if !r.Ours.ok() {
			return "not measured"
		}
		if r.Ours.med() >= r.MinValue {
			return "met"
		}
		return fmt.Sprintf("MISSED by %.1f points", r.MinValue-r.Ours.med())
	}
	if r.Unit == uPct {
		if !r.Ours.ok() {
			return "not measured"
		}
		noise := ""
		if r.Ours.min() <= r.MaxValue && r.Ours.max() >= r.MaxValue && r.Ours.max()-r.Ours.min() > 4*r.MaxValue {
			noise = fmt.Sprintf(" — within noise: the rounds range over %s … %s", fmtVal(uPct, r.Ours.min()), fmtVal(uPct, r.Ours.max()))
		}
		if r.Ours.med() <= r.MaxValue {
			return "met" + noise
		}
		return fmt.Sprintf("MISSED by %.2f points%s", r.Ours.med()-r.MaxValue, noise)
	}
	if r.Unit == uNs && r.MaxValue > 0 {
		if !r.Ours.ok() {
			return "not measured"
		}
		if x := r.Ours.med(); x > r.MaxValue {
			return fmt.Sprintf("MISSED by %.2f× (%s over)", x/r.MaxValue, fmtVal(uNs, x-r.MaxValue))
		}
		return "met"
	}
	return ""
}

func (r row) refName() string {
	if r.RefName != "" {
		return r.RefName
	}
	return "kernel"
}

// printTable writes the table as plain text.
func printTable(w *os.File, rows []row) {
	var lines [][]string
	lines = append(lines, []string{"figure", "uprobefs median [min – max]", "kernel/reference", "ratio", "target"})
	sec := ""
	for _, r := range rows {
		if r.Section != sec {
			sec = r.Section
			lines = append(lines, []string{"## " + sec})
		}
		ref := r.cell(r.Ref)
		if r.RefName != "" && r.Ref.ok() {
			ref = r.RefName + ": " + ref
		}
		t := r.Target
		if v := r.verdict(); v != "" {
			t += ": " + v
		}
		lines = append(lines, []string{r.Name, r.cell(r.Ours), ref, r.ratioCell(), t})
	}
	width := make([]int, 5)
	for _, l := range lines {
		if len(l) < 5 {
			continue
		}
		for i, c := range l {
			if n := len([]rune(c)); n > width[i] {
				width[i] = min(n, 60)
			}
		}
	}
	for _, l := range lines {
		if len(l) < 5 {
			fmt.Fprintln(w, l[0])
			continue
		}
		var b strings.Builder
		for i, c := range l {
			b.WriteString(c)
			if pad := width[i] - len([]rune(c)); pad > 0 && i < 4 {
				b.WriteString(strings.Repeat(" ", pad))
			}
			if i < 4 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// facts are the machine's facts for the report.
type facts struct {
	Kernel, CPU, Virt, Mem, Go string
	NCPU                       int
	LoadStart, LoadEnd         string
	KernelUprobes              string
}

func gatherFacts() facts {
	var f facts
	if b, err := exec.Command("uname", "-r").Output(); err == nil {
		f.Kernel = strings.TrimSpace(string(b))
	}
	f.NCPU = runtime.NumCPU()
	if b, err := exec.Command("nproc").Output(); err == nil {
		fmt.Sscan(string(b), &f.NCPU)
	}
	hyper := false
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f.CPU == "" && strings.HasPrefix(l, "model name") {
				if i := strings.IndexByte(l, ':'); i >= 0 {
					f.CPU = strings.TrimSpace(l[i+1:])
				}
			}
			if strings.HasPrefix(l, "flags") && strings.Contains(l, " hypervisor") {
				hyper = true
			}
		}
	}
	var virt []string
	if b, err := exec.Command("systemd-detect-virt").Output(); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" && s != "none" {
			virt = append(virt, "systemd-detect-virt: "+s)
		}
	} else if b, err := exec.Command("systemd-detect-virt", "--vm").Output(); err == nil {
		virt = append(virt, "vm: "+strings.TrimSpace(string(b)))
	}
	if hyper {
		virt = append(virt, "/proc/cpuinfo: hypervisor flag set (a VM)")
	}
	if len(virt) == 0 {
		virt = append(virt, "none detected")
	}
	f.Virt = strings.Join(virt, "; ")
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				f.Mem = strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:"))
			}
		}
	}
	f.Go = runtime.Version()
	f.LoadStart = loadavg()
	return f
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	fs := strings.Fields(string(b))
	if len(fs) < 3 {
		return "?"
	}
	return strings.Join(fs[:3], " ")
}

// markdown renders BENCHMARKS.md.
func markdown(f facts, rows []row, notes []string, analysis []string, took time.Duration, args []string) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# uprobefs benchmarks\n\n")
	p("Generated by `make bench` (`%s`) on %s in %s. Do not edit: every number below\n", strings.Join(args, " "), time.Now().UTC().Format("2006-01-02 15:04 MST"), took.Round(time.Second))
	p("came from that run; run `make bench` again to refresh it.\n\n")
	p("## Machine\n\n")
	p("| | |\n|---|---|\n")
	p("| kernel (uname -r) | %s |\n", f.Kernel)
	p("| CPUs (nproc) | %d |\n", f.NCPU)
	p("| CPU model | %s |\n", f.CPU)
	p("| virtualisation | %s |\n", f.Virt)
	p("| memory | %s |\n", f.Mem)
	p("| Go | %s |\n", f.Go)
	p("| load average at start / end | %s / %s |\n", f.LoadStart, f.LoadEnd)
	p("| kernel uprobes (tracefs) | %s |\n\n", f.KernelUprobes)
	p("## Results\n\n")
	var l1 float64
	fmt.Sscan(f.LoadStart, &l1)
	var l1e float64
	fmt.Sscan(f.LoadEnd, &l1e)
	if l1 > float64(f.NCPU) || l1e > float64(f.NCPU) {
		p("**Warning: the machine was busy** (1-minute load average %.1f at the start, %.1f at the end, on %d CPUs): other processes competed for the CPUs, so the spreads are wide and small differences (the idle overhead above all) are within noise. Run `make bench` on a quiet machine for tighter figures.\n\n", l1, l1e, f.NCPU)
	}
	p("Each cell is the median of the runs with [min – max]; uprobefs and the kernel were measured in the same run, on the same private copy of the same binary and offset, one after the other (never both on the file at once). Ratio = uprobefs median / kernel (or reference) median.\n\n")
	sec := ""
	for _, r := range rows {
		if r.Section != sec {
			sec = r.Section
			p("\n### %s\n\n", sec)
			p("| figure | uprobefs | kernel (or reference) | ratio | target |\n|---|---|---|---|---|\n")
		}
		t := r.Target
		if v := r.verdict(); v != "" {
			t += " — **" + v + "**"
		}
		ref := r.cell(r.Ref)
		if r.RefName != "" && r.Ref.ok() {
			ref = r.RefName + ": " + ref
		}
		p("| %s | %s | %s | %s | %s |\n", r.Name, esc(r.cell(r.Ours)), esc(ref), r.ratioCell(), esc(t))
	}
	var det []string
	for _, r := range rows {
		if r.Detail != "" {
			det = append(det, fmt.Sprintf("- **%s — %s**: %s", r.Section, r.Name, r.Detail))
		}
		for _, f := range r.failNotes() {
			det = append(det, fmt.Sprintf("- **%s — %s**: %s", r.Section, r.Name, f))
		}
	}
	if len(det) > 0 {
		p("\nRow notes:\n\n%s\n", strings.Join(det, "\n"))
	}
	p("\n## Targets\n\n")
	for _, a := range analysis {
		p("%s\n\n", a)
	}
	p("## How it was measured\n\n")
	for _, n := range notes {
		p("- %s\n", n)
	}
	return b.String()
}

func esc(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
