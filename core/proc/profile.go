package proc

import (
	"fmt"
	"sync"
	"time"
)

// HitProfile accumulates where the tracer's hit path spends its time. Pass
// one in Options.Profile; read it with Snapshot. Recording costs a few
// clock reads per hit.
type HitProfile struct {
	mu sync.Mutex
	s  HitProfileSnapshot
}

// HitProfileSnapshot is a copy of a HitProfile's totals over Hits hits.
type HitProfileSnapshot struct {
	Hits uint64
	// Away is the time from resuming a thread after a hit to the tracer
	// waking up for the next event: the tracee running to its next trap,
	// the trap itself, and the tracer's wake-up (scheduler, IPI).
	Away time.Duration
	// Reap is from the wake-up to the hit handler (waitid peek, wait4).
	Reap time.Duration
	// Decode is siginfo, rip, lookup and dispatch.
	Decode time.Duration
	// Step is the step-over: register get/emulate/set, or rip to slot.
	Step time.Duration
	// Resume is PTRACE_CONT.
	Resume time.Duration
}

// Snapshot returns the totals so far.
func (p *HitProfile) Snapshot() HitProfileSnapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s
}

// Reset clears the totals.
func (p *HitProfile) Reset() {
	p.mu.Lock()
	p.s = HitProfileSnapshot{}
	p.mu.Unlock()
}

// String gives per-hit averages in microseconds.
func (s HitProfileSnapshot) String() string {
	if s.Hits == 0 {
		return "no hits"
	}
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(s.Hits) / 1e3 }
	return fmt.Sprintf("per hit: away (tracee+trap+wake-up) %.2fµs, reap %.2fµs, decode+dispatch %.2fµs, step-over %.2fµs, resume %.2fµs",
		us(s.Away), us(s.Reap), us(s.Decode), us(s.Step), us(s.Resume))
}

// record adds one hit: t0 handler start, t1 after dispatch, t2 after the
// step-over, t3 after resume; the tracer's wake and last resume times give
// Away and Reap.
func (p *HitProfile) record(t *tracer, t0, t1, t2, t3 time.Time) {
	p.mu.Lock()
	s := &p.s
	s.Hits++
	if !t.lastResume.IsZero() && t.wake.After(t.lastResume) {
		s.Away += t.wake.Sub(t.lastResume)
	}
	if !t.wake.IsZero() {
		s.Reap += t0.Sub(t.wake)
	}
	s.Decode += t1.Sub(t0)
	s.Step += t2.Sub(t1)
	s.Resume += t3.Sub(t2)
	p.mu.Unlock()
	t.lastResume = t3
}
