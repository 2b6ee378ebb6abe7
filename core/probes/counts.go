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
	if n == 0 {
		return
	}
	for _, c := range u.list() {
		if c.RetHandler == nil && c.accepts(pid) {
			c.hits.Add(n)
		}
	}
}

// CountOnly reports whether the hits of u need nothing but counting, and
// the Handler calls of Busy consumers while they are Busy (Streaming): no
// consumer wants registers (WantRegs) or returns (RetHandler), and none
// has a Handler without Busy (it wants it at every hit). Safe on the hit
// path.
func (u *Uprobe) CountOnly() bool {
	p := u.consumers.Load()
	if p == nil {
		return false
	}
	for _, c := range *p {
		if c.WantRegs || c.RetHandler != nil || (c.Handler != nil && c.Busy == nil) {
			return false
		}
	}
	return true
}

// Streaming reports whether a consumer of u is Busy now: it wants its
// Handler called at every hit (a world that counts outside the engine
// must then call it, DispatchEvent, or take the trap path). Safe on the
// hit path.
func (u *Uprobe) Streaming() bool {
	for _, c := range u.list() {
		if c.Handler != nil && c.busy() {
			return true
		}
	}
	return false
}

// DispatchEvent calls the Handler of every Busy consumer of u whose filter
// accepts h.Pid, for a hit already counted (DispatchCount): the events of
// hits counted outside the engine.
func (e *Engine) DispatchEvent(u *Uprobe, h Hit) {
	for _, c := range u.list() {
		if c.RetHandler == nil && c.Handler != nil && c.busy() && c.accepts(h.Pid) {
			c.Handler(u, h)
		}
	}
}

// DispatchLost tells the Busy consumers of u that n of its events were
// lost before they could be dispatched (Consumer.Lost).
func (e *Engine) DispatchLost(u *Uprobe, n uint64) {
	for _, c := range u.list() {
		if c.Lost != nil && c.busy() {
			c.Lost(n)
		}
	}
}
