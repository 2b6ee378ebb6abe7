package main

// `bench agent`: uprobefs through the Manager API (the same Manager, Engine
// and ptrace World the filesystem drives), in a process of its own so that
// the workloads — children of the bench process — are not its children
// (the World never traces its own children). It reads one JSON request a
// line on stdin and answers one JSON line on stdout; EOF on stdin closes the
// Manager (every probe unregistered, every process restored and detached).

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/uprobefs/uprobefs/core/manager"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/proc"
	"github.com/uprobefs/uprobefs/core/rmap"
)

type agentReq struct {
	Op   string `json:"op"` // write, remove, hits, profile, gc
	Path string `json:"path,omitempty"`
	Name string `json:"name,omitempty"`
	Text string `json:"text,omitempty"`
}

type agentResp struct {
	Ns   int64  `json:"ns,omitempty"`
	Hits uint64 `json:"hits,omitempty"`
	Text string `json:"text,omitempty"`
	Err  string `json:"err,omitempty"`
	// profile: the World's hit-path totals (proc.HitProfileSnapshot)
	Prof *proc.HitProfileSnapshot `json:"prof,omitempty"`
}

func agentMain(args []string) int {
	place := proc.PlaceNone // as shipped (cmd/uprobefs)
	if len(args) > 0 && args[0] == "follow" {
		place = proc.PlaceFollow
	}
	prof := &proc.HitProfile{}
	eng := probes.NewEngine(proc.EngineOptions())
	var inodes rmap.Inodes
	// The World's diagnostics go to stderr, which bench keeps (the tail
	// is printed when a workload dies under the agent).
	var logMu sync.Mutex
	w, err := proc.NewWorld(eng, &inodes, proc.Options{Placement: place, Profile: prof, Log: func(format string, args ...any) {
		logMu.Lock()
		fmt.Fprintf(os.Stderr, "%s world: %s\n", time.Now().Format("15:04:05.000000"), fmt.Sprintf(format, args...))
		logMu.Unlock()
	}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	m := manager.NewManager(eng, &inodes, w, nil)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	fmt.Println("ready")
	for in.Scan() {
		var q agentReq
		var r agentResp
		if err := json.Unmarshal(in.Bytes(), &q); err != nil {
			r.Err = err.Error()
			out.Encode(r)
			continue
		}
		switch q.Op {
		case "write":
			t0 := time.Now()
			err := m.Write(manager.Root, q.Path, []byte(q.Text))
			r.Ns = time.Since(t0).Nanoseconds()
			if err != nil {
				r.Err = err.Error()
			}
		case "remove":
			t0 := time.Now()
			err := m.Remove(manager.Root, q.Path, q.Name)
			r.Ns = time.Since(t0).Nanoseconds()
			if err != nil {
				r.Err = err.Error()
			}
		case "hits":
			key, err := manager.KeyOf(q.Path)
			if err != nil {
				r.Err = err.Error()
			} else if p := m.Probe(key, q.Name); p == nil {
				r.Err = "no probe " + q.Name
			} else {
				r.Hits = p.Hits()
			}
		case "profile":
			s := prof.Snapshot()
			r.Prof = &s
			prof.Reset()
		case "gc":
			runtime.GC()
		default:
			r.Err = "unknown op " + q.Op
		}
		if err := out.Encode(r); err != nil {
			break
		}
	}
	if err := m.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "agent: close:", err)
		return 1
	}
	return 0
}

// agentTracer drives a `bench agent` child.
type agentTracer struct {
	c     *child
	place string
}

// startAgent starts an agent; place is "" (as shipped) or "follow"
// (proc.PlaceFollow).
func startAgent(place string) (*agentTracer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c, err := startChild(self, "agent", place)
	if err != nil {
		return nil, err
	}
	if err := c.expect("ready", 20*time.Second); err != nil {
		c.kill()
		return nil, err
	}
	a := &agentTracer{c: c, place: place}
	c.forget()
	c.forget = atExit("stop bench agent", func() { a.Close() })
	return a, nil
}

func (a *agentTracer) Name() string {
	if a.place == "follow" {
		return "uprobefs (Manager API, PlaceFollow)"
	}
	return "uprobefs (Manager API)"
}

func (a *agentTracer) Pid() int { return a.c.Pid() }

func (a *agentTracer) call(q agentReq, timeout time.Duration) (agentResp, error) {
	var r agentResp
	b, _ := json.Marshal(q)
	if err := a.c.send(string(b)); err != nil {
		return r, err
	}
	l, err := a.c.line(timeout)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal([]byte(l), &r); err != nil {
		return r, fmt.Errorf("agent: %q: %v", l, err)
	}
	if r.Err != "" {
		return r, errors.New(r.Err)
	}
	return r, nil
}

func (a *agentTracer) register(path, name, loc string) (time.Duration, error) {
	r, err := a.call(agentReq{Op: "write", Path: path, Text: name + "=" + loc + "\n"}, 2*time.Minute)
	return time.Duration(r.Ns), err
}

func (a *agentTracer) registerMany(path string, names, locs []string) (time.Duration, error) {
	text := ""
	for i := range names {
		text += names[i] + "=" + locs[i] + "\n"
	}
	r, err := a.call(agentReq{Op: "write", Path: path, Text: text}, 3*time.Minute)
	return time.Duration(r.Ns), err
}

func (a *agentTracer) unregister(path, name string) (time.Duration, error) {
	r, err := a.call(agentReq{Op: "remove", Path: path, Name: name}, 2*time.Minute)
	return time.Duration(r.Ns), err
}

func (a *agentTracer) unregisterMany(path string, names []string) (time.Duration, error) {
	var total time.Duration
	for _, n := range names {
		d, err := a.unregister(path, n)
		if err != nil {
			return total, err
		}
		total += d
	}
	return total, nil
}

func (a *agentTracer) hits(path, name string) (uint64, error) {
	r, err := a.call(agentReq{Op: "hits", Path: path, Name: name}, 30*time.Second)
	return r.Hits, err
}

// profile returns the World's hit-path totals since the last call.
func (a *agentTracer) profile() *proc.HitProfileSnapshot {
	r, err := a.call(agentReq{Op: "profile"}, 30*time.Second)
	if err != nil {
		return nil
	}
	return r.Prof
}

// breakdown describes where a hit's time goes: the tracer's own work per
// hit from the World's HitProfile, and the rest of the measured per-hit
// overhead, which is the trap, the ptrace stop and the two context
// switches. (HitProfile's own "away" is not used: it also counts the gaps
// between runs.)
func breakdown(s *proc.HitProfileSnapshot, perHitNs float64) string {
	if s == nil || s.Hits == 0 {
		return ""
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(s.Hits) }
	tr := per(s.Reap) + per(s.Decode) + per(s.Step) + per(s.Resume)
	return fmt.Sprintf("of %.1f µs a hit: tracer work %.1f µs (wait4/reap %.1f, decode+lookup+dispatch %.1f, step-over (regs get/emulate/set) %.1f, PTRACE_CONT %.1f); trap + stop + 2 context switches + tracer wake-up (the rest) %.1f µs",
		perHitNs/1e3, tr/1e3, per(s.Reap)/1e3, per(s.Decode)/1e3, per(s.Step)/1e3, per(s.Resume)/1e3, (perHitNs-tr)/1e3)
}

// Close ends the agent: EOF makes it close the Manager and exit.
func (a *agentTracer) Close() error {
	c := a.c
	select {
	case <-c.done:
		c.forget()
		return nil
	default:
	}
	c.stdin.Close()
	if !c.exited(30 * time.Second) {
		logf("bench agent did not exit 30s after EOF: killing it")
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
	}
	c.forget()
	if c.werr != nil {
		return fmt.Errorf("bench agent: %v: %s", c.werr, tail(c.Stderr(), 400))
	}
	return nil
}
