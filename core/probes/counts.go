package probes

// Counts kept outside the engine. A world may count the hits of a uprobe
// where they happen, without a trap (core/proc's jump sites count in memory
// shared with the tracee): those counts reach the consumers only when the
// world moves them there (DispatchCount), which it does when asked
// (EngineOptions.Flush: before a hit count is read, and before the consumer
// set of the uprobe changes, so that every hit goes to the consumers of its
// moment). A uprobe may be counted that way only while it is CountOnly;
// EngineOptions.Changed tells the world when that may have changed.

// Flush moves the hits of u counted outside the engine into its consumers
// (EngineOptions.Flush). Call it before reading a consumer's Hits. Safe for
// concurrent use; u may be nil.
func (e *Engine) Flush(u *Uprobe) {
	if e.flush != nil && u != nil {
		e.flush(u)
	}
}

// Changed tells the world that what the consumers of u need may have
// changed (a consumer came or went, or its Busy answer changed): a uprobe
// that is no longer CountOnly must take the trap path again, and one that
// became CountOnly may leave it. Safe for concurrent use; u may be nil.
func (e *Engine) Changed(u *Uprobe) {
	if e.changed != nil && u != nil {
		e.changed(u)
	}
}

// DispatchCount counts n hits of u in process pid for every consumer that
// counts entries and whose filter accepts pid; no handler is called (such
// hits are CountOnly's).
func (e *Engine) DispatchCount(u *Uprobe, pid int, n uint64) {
	p := u.consumers.Load()
	if p == nil || n == 0 {
		return
	}
	for _, c := range *p {
		if c.RetHandler != nil || (c.Filter != nil && !c.Filter(pid)) {
			continue
		}
		c.hits.Add(n)
	}
}

// CountOnly reports whether the hits of u need nothing but counting now:
// no consumer wants registers (WantRegs) or returns (RetHandler), and none
// wants its Handler called (a consumer with a Handler wants it at every
// hit unless it has Busy, and then while Busy says so). Safe on the hit
// path.
func (u *Uprobe) CountOnly() bool {
	p := u.consumers.Load()
	if p == nil {
		return false
	}
	for _, c := range *p {
		if c.WantRegs || c.RetHandler != nil || (c.Handler != nil && (c.Busy == nil || c.Busy())) {
			return false
		}
	}
	return true
}
