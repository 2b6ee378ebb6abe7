package manager

import (
	"context"
	"errors"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/uprobefs/uprobefs/core/probes"
)

// EventRingSize is the number of hit events an EventRing keeps (as many as a
// jump site's shared ring: a burst of them fits): a reader that
// falls further behind than this loses the oldest events (and is told so).
const EventRingSize = 1 << 16

// Bounds of the event rings of one Manager together: a ring holds a buffer
// only while it has a subscriber, and the buffers share ringBudgetEvents
// events; a ring gets EventRingSize events while the budget lasts, and at
// least ringMinEvents. So the rings of MaxProbes streamed probes hold at
// most (ringBudgetEvents + MaxProbes*ringMinEvents) events.
const (
	ringBudgetEvents = 1 << 18 // 10 MiB of Events
	ringMinEvents    = 64
)

// ringBudget is the events the buffers of a Manager's rings may still take.
// The zero value is not ready; newRingBudget.
type ringBudget struct {
	// free is accessed atomically; it goes below 0 by at most ringMinEvents
	// per ring.
	free atomic.Int64
}

func newRingBudget(n int64) *ringBudget {
	b := &ringBudget{}
	b.free.Store(n)
	return b
}

// take reserves the size of a new ring buffer: EventRingSize, or what is
// left of the budget, but at least ringMinEvents.
func (b *ringBudget) take() int {
	for {
		f := b.free.Load()
		n := int64(EventRingSize)
		n = max(min(n, f), ringMinEvents)
		if b.free.CompareAndSwap(f, f-n) {
			return int(n)
		}
	}
}

func (b *ringBudget) give(n int) { b.free.Add(int64(n)) }

// Event is one hit of a probe as the events file shows it.
type Event struct {
	Seq   uint64 // 1 for the first event the ring ever stored
	Time  int64  // unix ns
	Pid   int
	Tid   int
	Vaddr uint64
	Args  string // " NAME=VALUE..." of a probe with fetch arguments (args.go)
}

// Line formats e as one line of a probe's events file:
//
//	1733100000.123456789 pid=1234 tid=1235 addr=0x55d0c0a01139
//
// followed, for a probe with fetch arguments, by " NAME=VALUE" each.
func (e Event) Line() string { return string(e.appendLine(nil)) }

func (e Event) appendLine(b []byte) []byte {
	b = strconv.AppendInt(b, e.Time/1e9, 10)
	b = append(b, '.')
	ns := strconv.AppendInt(nil, 1e9+e.Time%1e9, 10)
	b = append(b, ns[1:]...)
	b = append(b, " pid="...)
	b = strconv.AppendInt(b, int64(e.Pid), 10)
	b = append(b, " tid="...)
	b = strconv.AppendInt(b, int64(e.Tid), 10)
	b = append(b, " addr=0x"...)
	b = strconv.AppendUint(b, e.Vaddr, 16)
	b = append(b, e.Args...) // escaped when fetched: one event, one line
	return append(b, '\n')
}

// ErrWouldBlock is returned by Subscription.Read when it is asked not to
// block and no event is pending (the events file maps it to EAGAIN).
var ErrWouldBlock = errors.New("no event pending")

// EventRing is the bounded stream of one probe's hit events, written on the
// hit path by the consumer's Handler and read by any number of subscribers.
//
// It is one ring of the last EventRingSize events (fewer when the Manager's
// ringBudget runs short, at least ringMinEvents), numbered by a sequence
// number, and every Subscription has its own cursor into it: each subscriber
// gets every event pushed after it subscribed, in order, unless it falls more
// than the ring's size behind; then the oldest events it has not read
// are overwritten (drop-oldest), counted in its Lost counter and reported in
// the stream as one "# lost N events" line. Nothing is stored, and no buffer
// held, while there is no subscriber, so a probe nobody streams costs one
// atomic load per hit and no memory.
//
// Push never blocks on a reader: it takes mu (held only to copy one event and
// close a wake channel) and returns.
//
// The zero value is not ready; use newEventRing.
type EventRing struct {
	// subs is the number of live subscriptions. subs is accessed atomically.
	subs atomic.Int32

	// mu protects everything below. mu is a leaf lock: nothing else is
	// acquired while it is held.
	mu sync.Mutex
	// buf holds the events with sequence numbers (next-len(buf), next],
	// event seq s at buf[(s-base)%size]; it grows up to size. buf is nil
	// (and size 0) while there is no subscriber: Push allocates it, the
	// last Subscription.Close frees it.
	buf  []Event
	size int
	base uint64 // seq of buf[0] when buf was allocated
	// budget is where size comes from and goes back to (nil: no bound but
	// EventRingSize).
	budget *ringBudget
	// next is the sequence number of the last event pushed (0: none).
	next uint64
	// wake, if not nil, is closed (and reset to nil) by the next Push or by
	// Close; readers waiting for events wait on it.
	wake chan struct{}
	// closed is set by Close: no more events will come.
	closed bool
	// lost is the total number of events subscribers lost.
	lost uint64
	// upLost counts the events lost before they reached r (PushLost);
	// each subscription reports what it has not yet (Subscription.up).
	upLost uint64
	// onStream, if not nil, is called (with no lock held) when the ring
	// gets its first subscriber and when it loses its last one: the hits
	// of its probe must then take (or may leave) the trap path, which
	// alone pushes events. Set before the ring is used.
	onStream func()
}

func newEventRing() *EventRing { return &EventRing{} }

// newEventRing returns a ring whose buffer is taken from the Manager's
// budget.
func (m *Manager) newEventRing() *EventRing { return &EventRing{budget: m.rings} }

// allocLocked gives r a buffer for the events from next+1 on.
//
// Preconditions: r.mu held; r.buf == nil.
func (r *EventRing) allocLocked() {
	r.size = EventRingSize
	if r.budget != nil {
		r.size = r.budget.take()
	}
	r.buf = make([]Event, 0, r.size)
	r.base = r.next + 1
}

// freeLocked frees r's buffer (no subscriber is left to read it).
//
// Preconditions: r.mu held.
func (r *EventRing) freeLocked() {
	if r.buf == nil {
		return
	}
	if r.budget != nil {
		r.budget.give(r.size)
	}
	r.buf, r.size = nil, 0
}

// Push records one hit for the current subscribers. It is called on the hit
// path: it never blocks beyond a short critical section and allocates only
// the first time after a ring had no subscriber.
func (r *EventRing) Push(h probes.Hit) { r.PushArgs(h, "") }

// Streaming reports whether someone reads r's events now.
func (r *EventRing) Streaming() bool { return r.subs.Load() > 0 }

// PushLost tells the readers that n events were lost before they reached
// r: each subscriber's next read starts with a "# lost N events" line for
// them (counted in Lost), whatever r itself overwrote meanwhile.
func (r *EventRing) PushLost(n uint64) {
	r.mu.Lock()
	r.upLost += n
	r.lost += n
	if r.wake != nil {
		close(r.wake)
		r.wake = nil
	}
	r.mu.Unlock()
}

// PushArgs is Push of a hit whose fetch arguments are args.
func (r *EventRing) PushArgs(h probes.Hit, args string) {
	r.push(Event{Time: h.Time, Pid: h.Pid, Tid: h.Tid, Vaddr: h.Vaddr, Args: args})
}

// push stores e (its Seq set here).
func (r *EventRing) push(e Event) {
	if r.subs.Load() == 0 {
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	if r.buf == nil {
		if r.subs.Load() == 0 {
			r.mu.Unlock()
			return
		}
		r.allocLocked()
	}
	r.next++
	e.Seq = r.next
	if len(r.buf) < r.size {
		r.buf = append(r.buf, e)
	} else {
		r.buf[(e.Seq-r.base)%uint64(r.size)] = e
	}
	if r.wake != nil {
		close(r.wake)
		r.wake = nil
	}
	r.mu.Unlock()
}

// Close ends the stream: readers get what is pending, then end of file.
func (r *EventRing) Close() {
	r.mu.Lock()
	r.closed = true
	if r.wake != nil {
		close(r.wake)
		r.wake = nil
	}
	r.mu.Unlock()
}

// Lost returns how many events subscribers of r have lost in total because
// they fell more than the ring's size behind.
func (r *EventRing) Lost() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost
}

// Subscribe starts a new reader at the end of the stream: it sees every event
// pushed from now on. filter, if not nil, hides the events for which it
// returns false. The subscription must be ended with Close.
func (r *EventRing) Subscribe(filter func(Event) bool) *Subscription {
	r.mu.Lock()
	s := &Subscription{r: r, cursor: r.next + 1, filter: filter, up: r.upLost}
	first := r.subs.Add(1) == 1
	r.mu.Unlock()
	if first && r.onStream != nil {
		r.onStream() // from now on every hit is wanted (Streaming)
	}
	return s
}

// Subscription is one reader's cursor into an EventRing. Its methods must not
// be called concurrently (the events file serialises reads of one handle).
type Subscription struct {
	r      *EventRing
	filter func(Event) bool
	// cursor is the sequence number of the next event to read.
	cursor  uint64
	pending []byte // formatted lines not yet returned
	// Lost counts the events this subscriber lost (ring overwritten).
	Lost uint64
	// up is the r.upLost this subscriber has reported.
	up     uint64
	closed bool
}

// collectLocked moves the events available to s into s.pending, up to
// about limit bytes (at least one line), so that what a reader leaves
// pending stays bounded by its read size.
//
// Preconditions: s.r.mu held.
func (s *Subscription) collectLocked(limit int) {
	r := s.r
	if up := r.upLost - s.up; up > 0 {
		s.up = r.upLost
		s.Lost += up
		s.pending = append(s.pending, "# lost "...)
		s.pending = strconv.AppendUint(s.pending, up, 10)
		s.pending = append(s.pending, " events\n"...)
	}
	oldest := r.next - uint64(len(r.buf)) + 1
	if s.cursor < oldest {
		n := oldest - s.cursor
		s.Lost += n
		r.lost += n
		s.pending = append(s.pending, "# lost "...)
		s.pending = strconv.AppendUint(s.pending, n, 10)
		s.pending = append(s.pending, " events\n"...)
		s.cursor = oldest
	}
	for ; s.cursor <= r.next; s.cursor++ {
		e := r.buf[(s.cursor-r.base)%uint64(r.size)]
		if s.filter != nil && !s.filter(e) {
			continue
		}
		s.pending = e.appendLine(s.pending)
		if len(s.pending) >= limit {
			s.cursor++
			break
		}
	}
}

// Read copies formatted event lines into dest. It returns as soon as at least
// one byte is available; while nothing is, it blocks until an event arrives
// (unless nonblock: then it returns ErrWouldBlock), ctx is done (ctx.Err()),
// or the ring is closed (0, nil: end of file).
func (s *Subscription) Read(ctx context.Context, dest []byte, nonblock bool) (int, error) {
	if s.closed {
		return 0, os.ErrClosed
	}
	for len(s.pending) == 0 {
		r := s.r
		r.mu.Lock()
		s.collectLocked(min(max(len(dest), 1), 64<<10))
		if len(s.pending) > 0 {
			r.mu.Unlock()
			break
		}
		if r.closed {
			r.mu.Unlock()
			return 0, nil
		}
		if nonblock {
			r.mu.Unlock()
			return 0, ErrWouldBlock
		}
		if r.wake == nil {
			r.wake = make(chan struct{})
		}
		wake := r.wake
		r.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	n := copy(dest, s.pending)
	s.pending = s.pending[n:]
	if len(s.pending) == 0 {
		s.pending = s.pending[:0:0]
	}
	return n, nil
}

// Close ends the subscription; the last one frees the ring's buffer.
func (s *Subscription) Close() {
	if s.closed {
		return
	}
	s.closed = true
	s.pending = nil
	r := s.r
	r.mu.Lock()
	last := r.subs.Add(-1) == 0
	if last {
		r.freeLocked()
	}
	r.mu.Unlock()
	if last && r.onStream != nil {
		r.onStream()
	}
}
