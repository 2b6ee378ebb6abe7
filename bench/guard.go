package main

import (
	"fmt"
	"sync"
	"syscall"
	"time"
)

// The kernel's uprobe and ours must never be on one file at the same time
// (contracts.md SAFETY). Every tracer is wrapped in a guard that records,
// per file, which tracer has probes on it and refuses a registration by
// another one — also when a failed unregistration left a probe behind.

var fileOwners struct {
	sync.Mutex
	m map[string]*owner
}

type owner struct {
	tracer string
	n      int
}

type guarded struct {
	t tracer

	mu     sync.Mutex
	broken string // why this tracer is given up on (an operation hung)
}

// opTimeout bounds one register/unregister/hits request. A request that
// takes longer means the tracer is stuck: it is given up on for the rest of
// the run (its daemon is killed at cleanup, which ends the blocked call).
const opTimeout = 60 * time.Second

// giveUp marks the tracer broken and logs its daemon's last words.
func (g *guarded) giveUp(why string) {
	g.mu.Lock()
	first := g.broken == ""
	if first {
		g.broken = why
	}
	g.mu.Unlock()
	if !first {
		return
	}
	logf("giving up on %s: %s", g.t.Name(), why)
	var c *child
	switch t := g.t.(type) {
	case *fuseTracer:
		c = t.daemon
	case *agentTracer:
		c = t.c
	}
	if c == nil {
		return
	}
	// A Go daemon dumps every goroutine's stack on SIGQUIT (and exits):
	// that is what says where it is stuck.
	c.signal(syscall.SIGQUIT, 5*time.Second)
	logf("%s: its stderr (goroutine dump on SIGQUIT) follows:\n%s", g.t.Name(), tail(c.Stderr(), 200<<10))
}

// do runs op with the timeout, unless the tracer was given up on.
func (g *guarded) do(what string, op func() error) error {
	if err := g.brokenErr(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- op() }()
	select {
	case err := <-done:
		return err
	case <-time.After(opTimeout):
		why := fmt.Sprintf("%s did not return in %v", what, opTimeout)
		g.giveUp(why)
		return fmt.Errorf("%s: %s", g.t.Name(), why)
	}
}

// markStuck gives up on t (if it is guarded): a process it traces hung.
func markStuck(t tracer, why string) {
	if g, ok := t.(*guarded); ok {
		g.giveUp(why)
	}
}

func guard(t tracer) tracer {
	if t == nil {
		return nil
	}
	return &guarded{t: t}
}

func (g *guarded) Name() string { return g.t.Name() }

func (g *guarded) claim(path string, n int) error {
	fileOwners.Lock()
	defer fileOwners.Unlock()
	if fileOwners.m == nil {
		fileOwners.m = map[string]*owner{}
	}
	o := fileOwners.m[path]
	if o != nil && o.tracer != g.t.Name() {
		return fmt.Errorf("refused: %s still has %d probe(s) on %s (never two tracers on one file)", o.tracer, o.n, path)
	}
	if o == nil {
		o = &owner{tracer: g.t.Name()}
		fileOwners.m[path] = o
	}
	o.n += n
	return nil
}

func (g *guarded) release(path string, n int) {
	fileOwners.Lock()
	defer fileOwners.Unlock()
	if o := fileOwners.m[path]; o != nil && o.tracer == g.t.Name() {
		if o.n -= n; o.n <= 0 {
			delete(fileOwners.m, path)
		}
	}
}

// brokenErr is the error of a tracer given up on, or nil.
func (g *guarded) brokenErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.broken != "" {
		return fmt.Errorf("%s: given up earlier: %s", g.t.Name(), g.broken)
	}
	return nil
}

func (g *guarded) register(path, name, loc string) (time.Duration, error) {
	if err := g.brokenErr(); err != nil {
		return 0, err // nothing sent: nothing to claim
	}
	if err := g.claim(path, 1); err != nil {
		return 0, err
	}
	var d time.Duration
	err := g.do("register "+name, func() (err error) { d, err = g.t.register(path, name, loc); return })
	if err != nil {
		// Whether a failed registration left anything is unknown for
		// a daemon; keep the claim unless the tracer is the kernel,
		// whose failed Add/Enable is rolled back.
		if _, k := g.t.(*kernelTracer); k {
			g.release(path, 1)
		}
	}
	return d, err
}

func (g *guarded) unregister(path, name string) (time.Duration, error) {
	var d time.Duration
	err := g.do("unregister "+name, func() (err error) { d, err = g.t.unregister(path, name); return })
	if err == nil {
		g.release(path, 1)
	}
	return d, err
}

func (g *guarded) hits(path, name string) (uint64, error) {
	var h uint64
	err := g.do("hits "+name, func() (err error) { h, err = g.t.hits(path, name); return })
	return h, err
}

func (g *guarded) registerMany(path string, names, locs []string) (time.Duration, error) {
	b, ok := g.t.(bulkTracer)
	if !ok {
		return 0, fmt.Errorf("%s cannot register in bulk", g.t.Name())
	}
	if err := g.brokenErr(); err != nil {
		return 0, err
	}
	if err := g.claim(path, len(names)); err != nil {
		return 0, err
	}
	var d time.Duration
	err := g.do("register many", func() (err error) { d, err = b.registerMany(path, names, locs); return })
	return d, err
}

func (g *guarded) unregisterMany(path string, names []string) (time.Duration, error) {
	b, ok := g.t.(bulkTracer)
	if !ok {
		return 0, fmt.Errorf("%s cannot unregister in bulk", g.t.Name())
	}
	var d time.Duration
	err := g.do("unregister many", func() (err error) { d, err = b.unregisterMany(path, names); return })
	if err == nil {
		g.release(path, len(names))
	}
	return d, err
}

func (g *guarded) list(path string) (time.Duration, int, error) {
	l, ok := g.t.(lister)
	if !ok {
		return 0, 0, fmt.Errorf("%s has no listing", g.t.Name())
	}
	var d time.Duration
	var n int
	err := g.do("list", func() (err error) { d, n, err = l.list(path); return })
	return d, n, err
}

func (g *guarded) removePattern(path, pattern string, n int) (time.Duration, error) {
	l, ok := g.t.(lister)
	if !ok {
		return 0, fmt.Errorf("%s has no listing", g.t.Name())
	}
	var d time.Duration
	err := g.do("remove by pattern", func() (err error) { d, err = l.removePattern(path, pattern, n); return })
	if err == nil {
		g.release(path, n)
	}
	return d, err
}

// Pid is the daemon's pid, or 0 if the tracer has no process of its own.
func (g *guarded) Pid() int {
	if d, ok := g.t.(daemon); ok {
		return d.Pid()
	}
	return 0
}

// unwrap returns the tracer inside a guard.
func unwrap(t tracer) tracer {
	if g, ok := t.(*guarded); ok {
		return g.t
	}
	return t
}

func (g *guarded) stats() (map[string]int64, error) {
	s, ok := g.t.(statser)
	if !ok {
		return nil, fmt.Errorf("%s has no stats", g.t.Name())
	}
	var m map[string]int64
	err := g.do("stats", func() (err error) { m, err = s.stats(); return })
	return m, err
}
