package main

// The kernel's uprobes through tracefs (internal/kuprobe), for the
// side-by-side figures.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/uprobefs/uprobefs/core/objfile"
	"github.com/uprobefs/uprobefs/internal/kuprobe"
)

// kernelTracer registers probes as kernel uprobe events named
// ufsbenchPID_NAME, so that it never touches anyone else's events.
type kernelTracer struct {
	prefix string

	mu   sync.Mutex
	live map[string]*kevent // by our name
}

type kevent struct {
	p      *kuprobe.Probe
	forget func()
}

var eventNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// openKernel checks that kernel uprobes work (mounting tracefs if needed),
// after removing events a previous, killed bench left behind.
func openKernel(probeBin string) (*kernelTracer, error) {
	if err := kuprobe.Available(); err != nil {
		return nil, err
	}
	k := &kernelTracer{prefix: fmt.Sprintf("ufsbench%d_", os.Getpid()), live: map[string]*kevent{}}
	k.removeStale()
	if _, err := k.register(probeBin, "check", "never_called"); err != nil {
		return nil, fmt.Errorf("creating a uprobe event: %w", err)
	}
	if _, err := k.unregister(probeBin, "check"); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *kernelTracer) Name() string { return "kernel" }

// removeStale removes events ufsbenchPID_* whose PID is not a running bench.
func (k *kernelTracer) removeStale() {
	b, err := os.ReadFile(filepath.Join(kuprobe.Dir, "uprobe_events"))
	if err != nil {
		return
	}
	re := regexp.MustCompile(`^[pr]:uprobes/(ufsbench(\d+)_\S*) `)
	for _, l := range strings.Split(string(b), "\n") {
		m := re.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[2])
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.Contains(string(comm), "bench") {
			continue // a bench that is running
		}
		if err := (&kuprobe.Probe{Name: m[1]}).Remove(); err == nil {
			logf("kernel: removed stale uprobe event %s", m[1])
		}
	}
}

// register adds the event and enables it; the time is both writes (the
// kernel installs the breakpoints in every process mapping the file when
// the event is enabled).
func (k *kernelTracer) register(path, name, loc string) (time.Duration, error) {
	if !eventNameRE.MatchString(name) {
		return 0, fmt.Errorf("kernel: bad event name %q", name)
	}
	kind, fn, args := splitLoc(loc)
	off, err := resolve(path, fn)
	if err != nil {
		return 0, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.live[name] != nil {
		return 0, fmt.Errorf("kernel: event %s exists", name)
	}
	t0 := time.Now()
	p, err := kuprobe.AddSpec(kind, k.prefix+name, path, off, args)
	if err != nil {
		return 0, err
	}
	ev := &kevent{p: p}
	ev.forget = atExit("kernel uprobe "+p.Name, func() { k.destroy(name) })
	k.live[name] = ev
	if err := p.Enable(); err != nil {
		k.destroyLocked(name)
		return 0, fmt.Errorf("enable %s: %w", p.Name, err)
	}
	return time.Since(t0), nil
}

// unregister disables and removes the event.
func (k *kernelTracer) unregister(path, name string) (time.Duration, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ev := k.live[name]
	if ev == nil {
		return 0, fmt.Errorf("kernel: no event %s", name)
	}
	t0 := time.Now()
	derr := ev.p.Disable()
	err := k.destroyLocked(name)
	d := time.Since(t0)
	if derr != nil {
		return d, derr
	}
	return d, err
}

func (k *kernelTracer) destroy(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.destroyLocked(name); err != nil {
		logf("kernel: %v", err)
	}
}

func (k *kernelTracer) destroyLocked(name string) error {
	ev := k.live[name]
	if ev == nil {
		return nil
	}
	var err error
	for i := 0; i < 50; i++ { // EBUSY while a hit or a perf user holds it
		if err = ev.p.Remove(); err == nil || !strings.Contains(err.Error(), "busy") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	delete(k.live, name)
	ev.forget()
	return nil
}

// hits reads the event's hit count from uprobe_profile.
func (k *kernelTracer) hits(path, name string) (uint64, error) {
	k.mu.Lock()
	ev := k.live[name]
	k.mu.Unlock()
	if ev == nil {
		return 0, fmt.Errorf("kernel: no event %s", name)
	}
	return ev.p.Hits()
}

func (k *kernelTracer) close() {
	k.mu.Lock()
	names := make([]string, 0, len(k.live))
	for n := range k.live {
		names = append(names, n)
	}
	k.mu.Unlock()
	for _, n := range names {
		k.destroy(n)
	}
}

// resolve returns the file offset of loc ("sym", "sym+off", "0x...") in path.
func resolve(path, loc string) (uint64, error) {
	f, err := objfile.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return f.Resolve(loc)
}

// splitLoc splits a bench location "FUNC[%return] [FETCHARGS...]" into the
// probe kind ("p" or "r"), the function and the fetch arguments.
func splitLoc(loc string) (kind, fn, args string) {
	fn, args, _ = strings.Cut(loc, " ")
	kind = "p"
	if f, ok := strings.CutSuffix(fn, "%return"); ok {
		kind, fn = "r", f
	}
	return kind, fn, args
}
