package main

// Helpers of the jump-site figures (issue 12, jumphit.go, jumpreg.go): a
// second `uprobefs mount --trap` (every hit on the trap path, for
// reference), a tracer wrapper that waits until status shows every site of
// the probe on the path a figure is about, and one that keeps an `events`
// reader open on the probe and counts what it receives.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// trapMount is `uprobefs mount --trap` (proc.Options.NoJump): its own name,
// so that the guard and the report tell it from the default mount.
type trapMount struct{ *fuseTracer }

func (trapMount) Name() string { return "`uprobefs mount --trap` (FUSE)" }

// startFuseTrap mounts uprobefs --trap at a new directory under dir; the
// caller stops it (it is also stopped at exit).
func startFuseTrap(bin, dir string) (*fuseTracer, error) {
	return mountFuse(bin, filepath.Join(dir, "mnt-trap"), "--trap")
}

// jumpSetup is the start of a jump-site phase: the default mount and a
// private copy of the workload (named name), or, when that mount did not
// start, pending: the section's one row (its figure what) saying so.
func jumpSetup(e *env, sec, what, name string) (jf *fuseTracer, bin string, pending []row, err error) {
	jf, _ = unwrap(e.fuse).(*fuseTracer)
	if jf == nil {
		return nil, "", []row{{Section: sec, Name: what, Ours: value{Note: "pending: `uprobefs mount` did not start: " + e.fuseNote}, Ref: value{Note: "—"}}}, nil
	}
	bin, err = e.copyBin(name)
	return jf, bin, nil, err
}

// statusPoll is the pause between two reads of a status file while waiting
// for a mode: status has no event to wait for (it is a snapshot at open).
const statusPoll = 200 * time.Microsecond

// siteModes reads the probe's status and returns its site lines' modes
// ("jump", "trap: REASON", "installed", "pending", ...).
func siteModes(f *fuseTracer, path, name string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(f.dir(path), name, "status"))
	if err != nil {
		return nil, err
	}
	var modes []string
	for _, l := range strings.Split(string(b), "\n") {
		fs := strings.SplitN(l, " ", 3)
		if len(fs) == 3 && strings.HasPrefix(fs[0], "pid=") && strings.HasPrefix(fs[1], "vaddr=") {
			modes = append(modes, fs[2])
		}
	}
	return modes, nil
}

// waitMode waits until status shows at least n sites (n ≥ 1) and every one
// of them in mode ("jump", or "trap" for any "trap: REASON"), and returns
// how long that took from the call.
func waitMode(f *fuseTracer, path, name, mode string, n int, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	deadline := t0.Add(timeout)
	for {
		modes, err := siteModes(f, path, name)
		if err != nil {
			return 0, err
		}
		all := len(modes) >= max(1, n)
		for _, m := range modes {
			if m != mode && !(mode == "trap" && strings.HasPrefix(m, "trap: ")) {
				all = false
				break
			}
		}
		if all {
			return time.Since(t0), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s/%s: status did not show %d site(s) %q in %v: %d site line(s), first %q",
				path, name, max(1, n), mode, timeout, len(modes), strings.Join(modes[:min(1, len(modes))], ""))
		}
		time.Sleep(statusPoll)
	}
}

// modeTracer is a FUSE tracer (guarded) whose register returns once
// status shows every site of the probe in mode: a figure measures the
// path it names, or fails.
type modeTracer struct {
	tracer
	f    *fuseTracer
	mode string
}

func (m *modeTracer) register(path, name, loc string) (time.Duration, error) {
	d, err := m.tracer.register(path, name, loc)
	if err != nil {
		return d, err
	}
	if _, err := waitMode(m.f, path, name, m.mode, 1, 10*time.Second); err != nil {
		return d, fmt.Errorf("%s: %w", m.Name(), err)
	}
	return d, nil
}

// readerTracer is a FUSE tracer (guarded) that opens the probe's events
// file right after registering it, reads it until the probe is removed
// (end of file), and counts the event lines and the "# lost N events"
// lines. register returns once the site is a jump site again (a probe
// with a reader stays one: its trampolines append the events to a ring
// shared with the daemon).
type readerTracer struct {
	tracer
	f *fuseTracer

	mu     sync.Mutex
	events uint64
	lost   uint64
	done   chan struct{}
	rerr   error
}

func (r *readerTracer) register(path, name, loc string) (time.Duration, error) {
	d, err := r.tracer.register(path, name, loc)
	if err != nil {
		return d, err
	}
	ev, err := os.Open(filepath.Join(r.f.dir(path), name, "events"))
	if err != nil {
		return d, err
	}
	r.mu.Lock()
	r.events, r.lost, r.rerr = 0, 0, nil
	r.done = make(chan struct{})
	done := r.done
	r.mu.Unlock()
	go func() {
		defer close(done)
		defer ev.Close()
		br := bufio.NewReaderSize(ev, 1<<16)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				if err != io.EOF {
					r.mu.Lock()
					r.rerr = err
					r.mu.Unlock()
				}
				return
			}
			r.mu.Lock()
			if s, ok := strings.CutPrefix(l, "# lost "); ok {
				n, _ := strconv.ParseUint(strings.Fields(s)[0], 10, 64)
				r.lost += n
			} else {
				r.events++
			}
			r.mu.Unlock()
		}
	}()
	if _, err := waitMode(r.f, path, name, "jump", 1, 10*time.Second); err != nil {
		return d, fmt.Errorf("%s with an events reader: %w", r.Name(), err)
	}
	return d, nil
}

// unregister removes the probe and waits for the reader to see the end of
// the stream.
func (r *readerTracer) unregister(path, name string) (time.Duration, error) {
	d, err := r.tracer.unregister(path, name)
	if err != nil {
		return d, err
	}
	r.mu.Lock()
	done := r.done
	r.mu.Unlock()
	if done == nil {
		return d, nil
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return d, fmt.Errorf("%s: the events reader got no end of file 10s after rmdir", r.Name())
	}
	return d, r.err()
}

// counts returns what the reader of the last registration received.
func (r *readerTracer) counts() (events, lost uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.events, r.lost
}

func (r *readerTracer) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rerr
}
