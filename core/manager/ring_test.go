package manager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/sim"
)

func TestManagerEvents(t *testing.T) {
	m, w, path, key := newMgr(t)
	mustWrite(t, m, path, "tick\n")
	o := offsetsOf(t, path)
	p := m.Probe(key, "tick")
	w.Hit(key, o.tick) // before anyone listens: not seen
	s1 := p.Subscribe(Root)
	defer s1.Close()
	buf := make([]byte, 4096)
	if _, err := s1.Read(context.Background(), buf, true); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("empty nonblocking read: %v", err)
	}
	// A blocked reader wakes on a hit.
	got := make(chan string, 1)
	go func() {
		n, err := s1.Read(context.Background(), buf, false)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:n])
	}()
	// Hit until the reader has something (it may not be blocked yet).
	var line string
	deadline := time.After(10 * time.Second)
wait:
	for {
		w.Hit(key, o.tick)
		select {
		case line = <-got:
			break wait
		case <-time.After(time.Millisecond):
		case <-deadline:
			t.Fatal("blocked reader not woken")
		}
	}
	pid := w.Proc(key).MM.ID
	if want := fmt.Sprintf(" pid=%d tid=%d addr=%#x\n", pid, pid, sim.Base+o.tick); !strings.Contains(line, want) {
		t.Fatalf("event line %q", line)
	}
	// Interrupted read.
	s2 := p.Subscribe(Root)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s2.Read(ctx, buf, false); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled read: %v", err)
	}
	// Unregistering ends the stream after what is pending.
	w.Hit(key, o.tick)
	mustWrite(t, m, path, "-tick\n")
	n, err := s2.Read(context.Background(), buf, false)
	if err != nil || !strings.Contains(string(buf[:n]), fmt.Sprintf("pid=%d ", pid)) {
		t.Fatalf("pending after close: %q %v", buf[:n], err)
	}
	if n, err := s2.Read(context.Background(), buf, false); n != 0 || err != nil {
		t.Fatalf("after close: %d %v, want EOF", n, err)
	}
	s2.Close()
}

func TestEventRingDropOldest(t *testing.T) {
	r := newEventRing()
	r.Push(probes.Hit{Pid: 1}) // no subscriber: dropped silently
	s := r.Subscribe(nil)
	defer s.Close()
	slow := r.Subscribe(func(e Event) bool { return e.Pid%2 == 0 })
	defer slow.Close()
	for i := range EventRingSize + 10 {
		r.Push(probes.Hit{Pid: i, Tid: i, Vaddr: uint64(i), Time: int64(i) * 1e9})
	}
	lines := drain(t, s, 1000)
	if lines[0] != "# lost 10 events" || len(lines) != EventRingSize+1 {
		t.Fatalf("first line %q, %d lines", lines[0], len(lines))
	}
	if want := "10.000000000 pid=10 tid=10 addr=0xa"; lines[1] != want {
		t.Fatalf("first event %q, want %q", lines[1], want)
	}
	if s.Lost != 10 || r.Lost() != 20 && r.Lost() != 10 {
		t.Fatalf("lost %d / ring %d", s.Lost, r.Lost())
	}
	buf := make([]byte, 1000)
	n, _ := slow.Read(context.Background(), buf, true)
	if !strings.HasPrefix(string(buf[:n]), "# lost 10 events\n10.000000000 pid=10 ") || strings.Contains(string(buf[:n]), "pid=11 ") {
		t.Fatalf("filtered read %q", buf[:n])
	}
}
