package manager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/core/probes"
)

// drain reads s until it would block and returns the lines.
func drain(t *testing.T, s *Subscription, bufSize int) []string {
	t.Helper()
	var all strings.Builder
	buf := make([]byte, bufSize)
	for {
		n, err := s.Read(context.Background(), buf, true)
		if errors.Is(err, ErrWouldBlock) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(s.pending) > 64 {
			t.Fatalf("%d bytes left pending after a read of %d", len(s.pending), bufSize)
		}
		all.Write(buf[:n])
	}
	return strings.Split(strings.TrimSuffix(all.String(), "\n"), "\n")
}

// TestEventRingBudget: rings share their Manager's budget, get at least
// ringMinEvents each, and give their buffer back when the last reader
// closes; a ring without reader holds no buffer. A reader of a short ring
// loses the oldest events, told so.
func TestEventRingBudget(t *testing.T) {
	b := newRingBudget(EventRingSize + 100)
	rs := make([]*EventRing, 3)
	subs := make([]*Subscription, 3)
	for i := range rs {
		rs[i] = &EventRing{budget: b}
		rs[i].Push(probes.Hit{Pid: 1}) // no reader: nothing allocated
		if rs[i].buf != nil {
			t.Fatal("a ring without reader allocated a buffer")
		}
		subs[i] = rs[i].Subscribe(nil)
		for j := range EventRingSize + 10 {
			rs[i].Push(probes.Hit{Pid: j})
		}
	}
	if got := []int{rs[0].size, rs[1].size, rs[2].size}; got[0] != EventRingSize || got[1] != 100 || got[2] != ringMinEvents {
		t.Fatalf("ring sizes %v, want [%d 100 %d]", got, EventRingSize, ringMinEvents)
	}
	if f := b.free.Load(); f != -ringMinEvents {
		t.Fatalf("budget left %d, want %d", f, -ringMinEvents)
	}
	lines := drain(t, subs[2], 7) // tiny reads: pending stays bounded
	if want := fmt.Sprintf("# lost %d events", EventRingSize+10-ringMinEvents); len(lines) != ringMinEvents+1 || lines[0] != want {
		t.Fatalf("short ring: %d lines, first %q", len(lines), lines[0])
	}
	two := rs[0].Subscribe(nil)
	subs[0].Close()
	if rs[0].buf == nil {
		t.Fatal("buffer freed while a reader is left")
	}
	two.Close()
	for _, s := range subs[1:] {
		s.Close()
	}
	for i, r := range rs {
		if r.buf != nil || r.size != 0 {
			t.Fatalf("ring %d keeps a buffer of %d after its last reader", i, r.size)
		}
	}
	if f := b.free.Load(); f != EventRingSize+100 {
		t.Fatalf("budget back to %d, want %d", f, EventRingSize+100)
	}
	// A new reader starts afresh and reads every new event.
	s := rs[1].Subscribe(nil)
	defer s.Close()
	for j := range 5 {
		rs[1].Push(probes.Hit{Pid: 100 + j})
	}
	if lines := drain(t, s, 4096); len(lines) != 5 || !strings.Contains(lines[0], " pid=100 ") {
		t.Fatalf("after re-subscribing: %q", lines)
	}
}
