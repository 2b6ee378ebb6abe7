// Command bench is `make bench`: uprobefs side by side with the kernel's
// uprobes, measured in one run on private copies of the same binary, printed
// as a table and written with the machine's facts to BENCHMARKS.md.
//
//	go run ./bench [-out BENCHMARKS.md] [-runs 5] [-budget 9m] [-only hit,threads,jump,...]
//
// It builds what it needs (the C workload in bench/testdata, ./cmd/uprobefs),
// starts every process it measures in its own process group and kills it by
// that id, and removes every kernel uprobe event it adds (group ufsbenchPID)
// — at the end, on error, and on SIGINT/SIGTERM/SIGHUP.
//
// uprobefs is measured two ways: as shipped (`uprobefs mount`, driven through
// the filesystem) and through the Manager API in a helper process (`bench
// agent`, a child of this one, so that the processes it traces are not its
// own children). The kernel's uprobe and ours are never on one file at once.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uprobefs/uprobefs/internal/kuprobe"
)

var (
	flagOut      = flag.String("out", "BENCHMARKS.md", "write the report here (\"\" = do not write)")
	flagRuns     = flag.Int("runs", 7, "runs per figure (at least 5 for the report)")
	flagBudget   = flag.Duration("budget", 8*time.Minute, "start no new measurement after this long; give up (clean up, exit 2) a minute later")
	flagOnly     = flag.String("only", "", "comma-separated sections to run: engine,hit,threads,idle,exec,reg,rss,retargs,death,jump (default all)")
	flagUprobefs = flag.String("uprobefs", "", "a built uprobefs binary (default: go build ./cmd/uprobefs)")
	flagGo       = flag.String("go", "go", "the go command (for go build and go test -bench)")
	flagKeep     = flag.Bool("keep", false, "keep the temporary directory")
	flagProfile  = flag.Bool("profile", true, "profile uprobefs (perf record) where a target is missed")
	flagNice     = flag.Int("nice", -10, "run the bench and everything it starts at this nice value (less noise from other load)")
)

// repoRoot is the module root (bench runs from it: make bench, go run ./bench).
var repoRoot = "."

// tracer is one way to put a probe on a binary: the kernel (tracefs),
// uprobefs through its filesystem, uprobefs through the Manager API.
type tracer interface {
	Name() string
	register(path, name, loc string) (time.Duration, error)
	unregister(path, name string) (time.Duration, error)
	hits(path, name string) (uint64, error)
}

// bulkTracer registers many probes in one request.
type bulkTracer interface {
	registerMany(path string, names, locs []string) (time.Duration, error)
	unregisterMany(path string, names []string) (time.Duration, error)
}

// lister is a bulkTracer that can also list a file's probes and remove
// them by one pattern.
type lister interface {
	list(path string) (time.Duration, int, error)
	removePattern(path, pattern string, n int) (time.Duration, error) // n: how many it removes
}

// daemon is a tracer that runs in a process of its own.
type daemon interface{ Pid() int }

type env struct {
	dir      string
	workload string
	runs     int
	deadline time.Time
	start    time.Time

	kernel     tracer // nil if unavailable
	kernelNote string
	fuse       tracer // nil if unavailable
	fuseNote   string
	api        tracer // nil if unavailable
	apiNote    string
	apiFollow  tracer // the API with proc.PlaceFollow (nil if unavailable)

	notes      []string     // methodology notes for the report
	analysis   []string     // target analysis paragraphs
	perf       string       // perf profile summary of the slotted hit run
	perfReg    string       // perf profile summary of a registration with 500 processes
	execProf   *execProfile // the daemon's exec profile (phaseExec)
	perfMany   string       // perf profile summary of one write of rssProbes probes
	perfRemove string       // the same of one removal of them by pattern
	hitProfs   []string     // the world's hit-path breakdown per probed function
}

// ours is uprobefs as shipped if it runs, else through the API.
func (e *env) ours() (tracer, string) {
	if e.fuse != nil {
		return e.fuse, ""
	}
	if e.api != nil {
		return e.api, ""
	}
	return nil, "pending: " + strings.TrimPrefix(e.fuseNote, "pending: ") + "; " + strings.TrimPrefix(e.apiNote, "pending: ")
}

func (e *env) left() time.Duration { return time.Until(e.deadline) }

// copyBin makes a private copy (a new inode) of the workload for one figure.
// withBin is a phase that runs f on a private copy of the workload named
// name (copyBin).
func withBin(name string, f func(e *env, bin string) ([]row, error)) func(*env) ([]row, error) {
	return func(e *env) ([]row, error) {
		bin, err := e.copyBin(name)
		if err != nil {
			return nil, err
		}
		return f(e, bin)
	}
}

func (e *env) copyBin(name string) (string, error) {
	if stopping.Load() {
		return "", errStopping
	}
	b, err := os.ReadFile(e.workload)
	if err != nil {
		return "", err
	}
	p := filepath.Join(e.dir, name)
	return p, os.WriteFile(p, b, 0o755)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		os.Exit(agentMain(os.Args[2:]))
	}
	flag.Parse()
	os.Exit(run())
}

func run() (code int) {
	handleSignals()
	defer clean.runAll()
	defer func() {
		if r := recover(); r != nil {
			logf("bench: panic: %v", r)
			clean.runAll()
			panic(r)
		}
	}()
	if *flagRuns < 1 {
		*flagRuns = 1
	}
	if *flagNice != 0 {
		// Children inherit it: workloads, the agent, uprobefs mount.
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, 0, *flagNice); err != nil {
			logf("bench: nice %d: %v (continuing)", *flagNice, err)
		}
	}
	e := &env{runs: *flagRuns, start: time.Now()}
	e.deadline = e.start.Add(*flagBudget)
	// The watchdog: whatever hangs (a FUSE request to a stuck daemon, a
	// tracee that never answers), the run ends, cleaned up, in time.
	watchdog := time.AfterFunc(*flagBudget+time.Minute, func() {
		stopping.Store(true)
		logf("bench: watchdog: still running %v after the start: cleaning up and giving up", *flagBudget+time.Minute)
		time.AfterFunc(40*time.Second, func() { os.Exit(3) })
		clean.runAll()
		os.Exit(2)
	})
	defer watchdog.Stop()
	f := gatherFacts()
	logf("bench: %s, %d CPUs, %s; load %s; budget %v", f.Kernel, f.NCPU, f.CPU, f.LoadStart, *flagBudget)

	removeStaleDirs()
	dir, err := os.MkdirTemp("", fmt.Sprintf("ufsbench-%d-", os.Getpid()))
	if err != nil {
		logf("bench: %v", err)
		return 1
	}
	e.dir = dir
	if !*flagKeep {
		atExit("remove "+dir, func() { os.RemoveAll(dir) })
	}
	if e.workload, err = buildWorkload(dir); err != nil {
		logf("bench: %v", err)
		return 1
	}

	// The kernel.
	if k, err := openKernel(e.workload); err != nil {
		e.kernelNote = "unavailable: " + err.Error()
		f.KernelUprobes = e.kernelNote
		logf("kernel uprobes: %v", err)
	} else {
		e.kernel = k
		atExit("kernel uprobe events", k.close)
		f.KernelUprobes = "available (" + kuprobe.Dir + ")"
	}
	// uprobefs as shipped.
	bin := *flagUprobefs
	if bin == "" {
		bin, err = buildUprobefs(*flagGo, dir)
	}
	if err != nil {
		e.fuseNote = "pending: " + err.Error()
	} else if ft, err := startFuse(bin, dir); err != nil {
		e.fuseNote = "failed: " + err.Error()
	} else {
		e.fuse = ft
	}
	if e.fuseNote != "" {
		logf("uprobefs mount: %s", e.fuseNote)
	}
	// uprobefs through the API.
	if at, err := startAgent(""); err != nil {
		e.apiNote = "failed: " + err.Error()
		logf("uprobefs API agent: %s", e.apiNote)
	} else {
		e.api = at
	}
	// The same with the tracer following the tracee's CPU, for the
	// per-hit placement comparison.
	if at, err := startAgent("follow"); err != nil {
		logf("uprobefs API agent (PlaceFollow): %v", err)
	} else {
		e.apiFollow = at
	}

	// Every tracer is guarded: never two on one file (guard.go).
	e.kernel, e.fuse, e.api, e.apiFollow = guard(e.kernel), guard(e.fuse), guard(e.api), guard(e.apiFollow)

	var rows []row
	type phase struct {
		name string
		min  time.Duration // skip if less than this is left
		fn   func(*env) ([]row, error)
	}
	phases := []phase{
		{"engine", 30 * time.Second, phaseEngine},
		{"hit", 40 * time.Second, withBin("hit", phaseHit)},
		{"threads", 30 * time.Second, withBin("threads", phaseThreads)},
		{"idle", 30 * time.Second, withBin("idle", phaseIdle)},
		{"exec", 20 * time.Second, withBin("exectarget", phaseExec)},
		{"reg", 60 * time.Second, withBin("reg", phaseReg)},
		{"rss", 30 * time.Second, phaseRSS},
		{"retargs", 30 * time.Second, withBin("retargs", phaseRetArgs)},
		{"death", 20 * time.Second, phaseDeath},
		{"jump", 20 * time.Second, phaseJump},
		{"jumphit", 40 * time.Second, phaseJumpHit},
		{"jumpreg", 20 * time.Second, phaseJumpReg},
	}
	only := map[string]bool{}
	for _, s := range strings.Split(*flagOnly, ",") {
		if s = strings.TrimSpace(s); s != "" {
			only[s] = true
		}
	}
	for _, p := range phases {
		if len(only) > 0 && !only[p.name] {
			continue
		}
		if stopping.Load() {
			select {} // the signal handler cleans up and exits
		}
		if e.left() < p.min {
			logf("phase %s: skipped: %v left of the budget", p.name, e.left().Round(time.Second))
			rows = append(rows, row{Section: sectionOf(p.name), Name: p.name, Ours: value{Note: "skipped: time budget"}, Ref: value{Note: "skipped: time budget"}})
			continue
		}
		logf("phase %s (%v left)", p.name, e.left().Round(time.Second))
		t0 := time.Now()
		rs, err := safePhase(p.fn, e)
		if err != nil {
			logf("phase %s: %v", p.name, err)
			note := "failed: " + oneLine(err.Error())
			rs = append(rs, row{Section: sectionOf(p.name), Name: p.name + " (phase error)", Ours: value{Note: note}, Ref: value{Note: "—"}})
		}
		logf("phase %s: %v", p.name, time.Since(t0).Round(time.Millisecond))
		rows = append(rows, rs...)
	}

	if stopping.Load() {
		select {}
	}
	// Shut the tracers down before writing: cleanup errors show up here.
	if g, ok := e.fuse.(*guarded); ok {
		g.t.(*fuseTracer).stop()
	}
	for _, t := range []tracer{e.api, e.apiFollow} {
		if g, ok := t.(*guarded); ok {
			t = g.t
		}
		if at, ok := t.(io.Closer); ok {
			if err := at.Close(); err != nil {
				logf("%v", err)
			}
		}
	}
	f.LoadEnd = loadavg()
	took := time.Since(e.start)
	fmt.Println()
	printTable(os.Stdout, rows)
	e.analyse(rows)
	if *flagOut != "" {
		md := markdown(f, rows, e.methodNotes(), e.analysis, took, append([]string{"bench"}, os.Args[1:]...))
		if err := os.WriteFile(*flagOut, []byte(md), 0o644); err != nil {
			logf("bench: %v", err)
			return 1
		}
		logf("bench: wrote %s (%v)", *flagOut, took.Round(time.Second))
	}
	return 0
}

func safePhase(fn func(*env) ([]row, error), e *env) (rs []row, err error) {
	defer func() {
		if r := recover(); r != nil {
			buf := make([]byte, 4096)
			buf = buf[:runtime.Stack(buf, false)]
			err = fmt.Errorf("panic: %v\n%s", r, buf)
		}
	}()
	return fn(e)
}

func sectionOf(phase string) string {
	switch phase {
	case "engine":
		return "Engine (in-memory MMs, no processes)"
	case "hit":
		return "Per-hit overhead"
	case "threads":
		return "Hit throughput"
	case "idle":
		return "Idle overhead"
	case "exec":
		return "Exec of a probed binary"
	case "reg":
		return "Registration latency"
	case "rss":
		return "Daemon memory"
	case "retargs":
		return "Return probes and fetch arguments"
	case "death":
		return "Daemon death (the guardian)"
	case "jump":
		return "Jump-site eligibility (function entries)"
	}
	return phase
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// buildWorkload compiles bench/testdata/workload.c.
func buildWorkload(dir string) (string, error) {
	out := filepath.Join(dir, "workload")
	src := filepath.Join(repoRoot, "bench", "testdata", "workload.c")
	cmd := exec.Command("gcc", "-O2", "-g", "-pthread", "-o", out, src)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc %s: %v\n%s", src, err, b)
	}
	return out, nil
}

// kv parses "a=1 b=2".
func kv(line string) (map[string]int64, error) {
	m, err := pairs(strings.Fields(line), "=")
	if err != nil {
		return nil, fmt.Errorf("bad workload output %q", line)
	}
	return m, nil
}

// pairs parses items "KEY" sep "INTEGER" into a map.
func pairs(items []string, sep string) (map[string]int64, error) {
	m := map[string]int64{}
	for _, f := range items {
		k, v, ok := strings.Cut(f, sep)
		x, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("bad item %q", f)
		}
		m[k] = x
	}
	return m, nil
}

// hitRun is one run of `workload hit` (or idle), probed by t if not nil.
type hitRun struct {
	ns    float64
	calls uint64
	hits  uint64
}

// runCounted is runWorkload for a run whose hits must equal its calls: a
// run where they differ is an error.
func runCounted(t tracer, bin, name, loc string, timeout time.Duration, args ...string) (hitRun, error) {
	run, err := runWorkload(t, bin, name, loc, timeout, args...)
	if err == nil && run.hits != run.calls {
		err = fmt.Errorf("hits %d != calls %d", run.hits, run.calls)
	}
	return run, err
}

// runWorkload starts bin with args, waits for "ready", registers loc with
// t, sends "go", reads the result, reads the hit count and unregisters.
func runWorkload(t tracer, bin, name, loc string, timeout time.Duration, args ...string) (r hitRun, err error) {
	c, err := startChild(bin, args...)
	if err != nil {
		return r, err
	}
	defer c.kill()
	if err := c.expect("ready", 10*time.Second); err != nil {
		return r, err
	}
	if t != nil {
		if _, err := t.register(bin, name, loc); err != nil {
			return r, fmt.Errorf("%s: register %s: %w", t.Name(), loc, err)
		}
		defer func() {
			if _, uerr := t.unregister(bin, name); uerr != nil && err == nil {
				err = fmt.Errorf("%s: unregister %s: %w", t.Name(), name, uerr)
			}
		}()
	}
	if err := c.send("go"); err != nil {
		return r, err
	}
	l, err := c.line(timeout)
	if err != nil {
		if errors.Is(err, errTimeout) {
			markStuck(t, fmt.Sprintf("a workload it traced (%s) did not finish in %v", strings.Join(args, " "), timeout))
		} else if ag, ok := unwrap(t).(*agentTracer); ok {
			logf("workload %d under the agent: %v; the World's last diagnostics:\n%s", c.Pid(), err, tail(ag.c.Stderr(), 1500))
		}
		return r, err
	}
	m, err := kv(l)
	if err != nil {
		return r, err
	}
	if err := c.wait(10 * time.Second); err != nil {
		return r, err
	}
	r.ns = float64(m["ns"])
	r.calls = uint64(m["calls"])
	if c, ok := m["calls"]; ok && uint64(m["sum"]) != uint64(c) {
		return r, fmt.Errorf("checksum %d != calls %d", m["sum"], c)
	}
	if t != nil {
		if r.hits, err = t.hits(bin, name); err != nil {
			return r, err
		}
	}
	return r, nil
}

// removeStaleDirs removes temporary directories of benches that are not
// running any more (killed before their cleanup).
func removeStaleDirs() {
	ds, _ := filepath.Glob(filepath.Join(os.TempDir(), "ufsbench-*-*"))
	for _, d := range ds {
		f := strings.Split(filepath.Base(d), "-")
		pid, err := strconv.Atoi(f[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.Contains(string(comm), "bench") {
			continue
		}
		if isMounted(filepath.Join(d, "mnt")) {
			continue
		}
		os.RemoveAll(d)
	}
}
