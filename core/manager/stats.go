package manager

import (
	"fmt"
	"strings"
)

// Stats are the Manager's counters and, if the world keeps them, the world's.
type Stats struct {
	Files      int    // files with probes
	Probes     int    // named probes
	Hits       uint64 // sum of the probes' hits
	Errors     uint64 // refused requests
	EventsLost uint64 // events readers lost (ring overwritten)
	Readers    int    // open events files
	World      *WorldStats
}

// Stats returns the counters.
func (m *Manager) Stats() Stats {
	var s Stats
	m.mu.Lock()
	s.Files = len(m.files)
	var rings []*EventRing
	for _, f := range m.files {
		s.Probes += len(f.probes)
		for _, p := range f.probes {
			s.Hits += p.Hits()
			rings = append(rings, p.events)
		}
	}
	m.mu.Unlock()
	for _, r := range rings {
		s.EventsLost += r.Lost()
		s.Readers += int(r.subs.Load())
	}
	s.Errors = m.errors.Load()
	if ws, ok := m.world.(WorldStatser); ok {
		w := ws.Stats()
		s.World = &w
	}
	return s
}

// Text formats Stats as "key value" lines.
func (s Stats) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "files %d\nprobes %d\nhits %d\nerrors %d\nevent_readers %d\nevents_lost %d\n", s.Files, s.Probes, s.Hits, s.Errors, s.Readers, s.EventsLost)
	if w := s.World; w != nil {
		fmt.Fprintf(&b, "processes %d\nthreads %d\nbreakpoints %d\nworld_hits %d\nworld_errors %d\n", w.Processes, w.Threads, w.Breakpoints, w.Hits, w.Errors)
		// The exec profile (core/proc's Stats): counts, and the
		// tracer's total time in each step in nanoseconds.
		fmt.Fprintf(&b, "exec_fanotify_holds %d\nexec_fanotify_ns %d\nexecs %d\nexec_attach_ns %d\nexec_loader_traps %d\nexec_loader_ns %d\nexec_switches %d\nexec_switch_ns %d\n",
			w.ExecFans, w.ExecFan.Nanoseconds(), w.Execs, w.ExecAttach.Nanoseconds(), w.ExecLoaderTraps, w.ExecLoader.Nanoseconds(), w.ExecSwitches, w.ExecSwitch.Nanoseconds())
	}
	return b.String()
}
