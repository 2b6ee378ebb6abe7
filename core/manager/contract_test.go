package manager

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestNegativeRemoveLine: "-1" is a negative offset (EINVAL), not the
// removal of a probe named "1" (a name is never all digits); "-0x..."
// removes the probe of that default name.
func TestNegativeRemoveLine(t *testing.T) {
	m, _, path, key := newMgr(t)
	o := offsetsOf(t, path)
	mustWrite(t, m, path, hex(o.tock)+"\n")
	for _, line := range []string{"-1", "-010", "-0", "-:1", "1=tick", "p:1 tick"} {
		err := m.Write(Root, path, []byte(line+"\n"))
		if !errnoIs(err, syscall.EINVAL) || !strings.Contains(err.Error(), "digits") {
			t.Errorf("%q: %v, want EINVAL (all digits)", line, err)
		}
	}
	if got, want := names(m.Probes(key)), hex(o.tock)+"@"+hex(o.tock); got != want {
		t.Fatalf("probes after refused lines = %q, want %q", got, want)
	}
	mustWrite(t, m, path, "-"+hex(o.tock)+"\n")
	if ps := m.Probes(key); len(ps) != 0 {
		t.Fatalf("probes after -0x... = %q", names(ps))
	}
}

// TestOctalOffset: a leading 0 reads as octal, as in uprobe_events, never
// silently as decimal; "08" is refused.
func TestOctalOffset(t *testing.T) {
	m, _, path, key := newMgr(t)
	o := offsetsOf(t, path)
	oct := fmt.Sprintf("0%o", o.tick)
	mustWrite(t, m, path, oct+"\n")
	p := m.Probe(key, hex(o.tick))
	if p == nil || p.Offset != o.tick || p.Location != hex(o.tick) {
		t.Fatalf("%s registered %q, want a probe %s at %#x", oct, names(m.Probes(key)), hex(o.tick), o.tick)
	}
	if err := m.Write(Root, path, []byte("08\n")); !errnoIs(err, syscall.EINVAL) || !strings.Contains(err.Error(), "octal") {
		t.Fatalf("08: %v, want EINVAL naming octal", err)
	}
}

// TestProbeLimit: a batch that would exceed the probe limit is ENOSPC and
// changes nothing; removals in the same batch make room.
func TestProbeLimit(t *testing.T) {
	m, _, path, key := newMgr(t)
	m.maxProbes = 2
	mustWrite(t, m, path, "a=tick\nb=tock\n")
	err := m.Write(Root, path, []byte("c=tick\n"))
	if !errnoIs(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "at most 2") {
		t.Fatalf("third probe: %v, want ENOSPC", err)
	}
	if got := names(m.Probes(key)); got != "a@tick b@tock" {
		t.Fatalf("probes = %q", got)
	}
	if e := m.Errors(); len(e) != 1 || e[0].Errno != syscall.ENOSPC {
		t.Fatalf("error log %v", e)
	}
	if err := m.Write(Root, path, []byte("-a\nc=tick\n")); err != nil {
		t.Fatalf("replace within the limit: %v", err)
	}
	if got := names(m.Probes(key)); got != "b@tock c@tick" {
		t.Fatalf("probes = %q", got)
	}
}

// TestOwnBinary: a file the daemon's process maps (here: the test binary,
// what <mount>/proc/self/exe names) is refused with EDEADLK and a reason.
func TestOwnBinary(t *testing.T) {
	m, _, _, _ := newMgr(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	err = m.Write(Root, exe, []byte("main.main\n"))
	if !errnoIs(err, syscall.EDEADLK) || !strings.Contains(err.Error(), "daemon itself") {
		t.Fatalf("probe on the daemon's own binary: %v, want EDEADLK", err)
	}
	if len(m.All()) != 0 {
		t.Fatalf("probes: %v", m.All())
	}
}
