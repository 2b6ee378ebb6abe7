package manager

import (
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// Hits counted outside the engine. Where the world counts a probe's hits in
// the traced process itself (core/proc's jump sites: no trap), the counts
// reach the probe's consumer when the engine is asked to flush them, which
// every read of its hit count does (probes.Consumer.Hits). A probe whose
// events someone reads needs its Handler called at every hit, so its
// consumer is Busy while its ring streams, and the engine is told when
// that changes: the world then has its sites append events too (or, where
// it cannot, moves them back to the trap path); a new reader waits until
// the world has acted (WorldSettler), so that it sees every hit from then
// on. Events the world lost on the way reach the ring as a count
// (Consumer.Lost).

// WorldSettler is implemented by a world whose reaction to Engine.Changed
// is asynchronous: Settle waits until it has acted on every Changed call
// made before.
type WorldSettler interface{ Settle() }

// countOutside sets up p (before its registration) for hits counted
// outside the engine.
func (m *Manager) countOutside(in *rmap.Inode, p *Probe) {
	off := p.probeOff()
	uprobe := func() *probes.Uprobe { return m.eng.UprobeAt(in, off) }
	if wj, ok := m.world.(WorldJumps); ok {
		p.mode = func() string { return m.sitesMode(wj, in, off) }
	}
	if p.consumer.Handler == nil || p.consumer.WantRegs || p.consumer.RetHandler != nil {
		return // never CountOnly anyway
	}
	ring := p.events
	p.consumer.Busy = ring.Streaming
	p.consumer.Lost = ring.PushLost
	ring.onStream = func() {
		m.eng.Changed(uprobe())
		if s, ok := m.world.(WorldSettler); ok {
			s.Settle()
		}
	}
}

// sitesMode is the MODE of a listing line (Probe.ListingLine) of the probe
// at (in, off): how its installed sites are hit.
func (m *Manager) sitesMode(wj WorldJumps, in *rmap.Inode, off uint64) string {
	jump, trap := 0, 0
	m.eng.Sites(in, off, func(s probes.Site) bool {
		if s.Installed {
			if wj.SiteMode(s.MM, s.Vaddr) == "jump" {
				jump++
			} else {
				trap++
			}
		}
		return true
	})
	switch {
	case jump > 0 && trap > 0:
		return "mixed"
	case jump > 0:
		return "jump"
	case trap > 0:
		return "trap"
	}
	return "-"
}
