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

// EventRingSize is the number of hit events an EventRing keeps: a reader that
// falls further behind than this loses the oldest events (and is told so).
const EventRingSize = 4096

// Event is one hit of a probe as the events file shows it.
type Event struct {
	Seq   uint64 // 1 for the first event the ring ever stored
	Time  int64  // unix ns
	Pid   int
	Tid   int
	Vaddr uint64
}

// Line formats e as one line of a probe's events file:
//
//	1733100000.123456789 pid=1234 tid=1235 addr=0x55d0c0a01139
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
	return append(b, '\n')
}

// ErrWouldBlock is returned by Subscription.Read when it is asked not to
// block and no event is pending (the events file maps it to EAGAIN).
var ErrWouldBlock = errors.New("no event pending")

// EventRing is the bounded stream of one probe's hit events, written on the
// hit path by the consumer's Handler and read by any number of subscribers.
//
// It is one ring of the last EventRingSize events, numbered by a sequence
// number, and every Subscription has its own cursor into it: each subscriber
// gets every event pushed after it subscribed, in order, unless it falls more
// than EventRingSize events behind; then the oldest events it has not read
// are overwritten (drop-oldest), counted in its Lost counter and reported in
// the stream as one "# lost N events" line. Nothing is stored while there is
// no subscriber, so a probe nobody streams costs one atomic load per hit.
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
	// event seq s at buf[(s-1)%EventRingSize]; it grows up to EventRingSize.
	buf []Event
	// next is the sequence number of the last event pushed (0: none).
	next uint64
	// wake, if not nil, is closed (and reset to nil) by the next Push or by
	// Close; readers waiting for events wait on it.
	wake chan struct{}
	// closed is set by Close: no more events will come.
	closed bool
	// lost is the total number of events subscribers lost.
	lost uint64
}

func newEventRing() *EventRing { return &EventRing{} }

// Push records one hit for the current subscribers. It is called on the hit
// path: it never blocks beyond a short critical section and never allocates
// once the ring has grown.
func (r *EventRing) Push(h probes.Hit) {
	if r.subs.Load() == 0 {
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.next++
	e := Event{Seq: r.next, Time: h.Time, Pid: h.Pid, Tid: h.Tid, Vaddr: h.Vaddr}
	if len(r.buf) < EventRingSize {
		r.buf = append(r.buf, e)
	} else {
		r.buf[(e.Seq-1)%EventRingSize] = e
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
// they fell more than EventRingSize events behind.
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
	s := &Subscription{r: r, cursor: r.next + 1, filter: filter}
	r.subs.Add(1)
	r.mu.Unlock()
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
	Lost   uint64
	closed bool
}

// collect moves the events available to s into s.pending, and reports
// whether the ring is closed and whether it has to wait.
//
// Preconditions: s.r.mu held.
func (s *Subscription) collectLocked() {
	r := s.r
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
		e := r.buf[(s.cursor-1)%EventRingSize]
		if s.filter != nil && !s.filter(e) {
			continue
		}
		s.pending = e.appendLine(s.pending)
		if len(s.pending) >= 64<<10 {
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
		s.collectLocked()
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

// Close ends the subscription.
func (s *Subscription) Close() {
	if s.closed {
		return
	}
	s.closed = true
	s.r.subs.Add(-1)
}
