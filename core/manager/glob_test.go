package manager

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/core/sim"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// newGlobMgr is newMgr on a private copy of the glob fixture (known
// function symbols).
func newGlobMgr(t *testing.T) (*Manager, *sim.Watcher, string, rmap.InodeKey) {
	t.Helper()
	path := testfix.Glob(t)
	m, w, key := newMgrOn(t, path, nil, nil)
	return m, w, path, key
}

func probeNames(ps []*Probe) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Name)
	}
	return s
}

func TestParsePatterns(t *testing.T) {
	for in, want := range map[string]Op{
		"alpha_*":     {Location: "alpha_*"},
		"p *alloc*":   {Location: "*alloc*"},
		"f?o":         {Location: "f?o"},
		"-alpha_*":    {Remove: true, Name: "alpha_*"},
		"-:many_1?":   {Remove: true, Name: "many_1?"},
		"-*":          {Remove: true, Name: "*"},
		"x=alpha_one": {Name: "x", Location: "alpha_one"},
	} {
		got, err := ParseProbeLines(in)
		if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], want) {
			t.Errorf("ParseProbeLines(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	wantParseRefusals(t, map[string]string{
		"x=alpha_*":     "NAME= (or p:NAME) cannot be given with a pattern",
		"p:x alpha_*":   "NAME= (or p:NAME) cannot be given with a pattern",
		"x*=alpha_one":  "contains a wildcard",
		"p:x? alpha_*":  "cannot be given with a pattern",
		"p:x? alpha":    "contains a wildcard",
		"alpha_*+4":     "a pattern takes no +OFF",
		"0x1*":          "an offset cannot be a pattern",
		"ok\nalpha_*+1": "line 2: ",
	})
}

// TestPatternRegister: a pattern registers exactly the matching function
// symbols of the fixture, named after them, at their offsets, with their
// breakpoints; hits count per probe; refusals leave nothing behind.
func TestPatternRegister(t *testing.T) {
	var logBuf testfix.SyncBuffer
	path := testfix.Glob(t)
	m, w, key := newMgrOn(t, path, slog.New(slog.NewTextHandler(&logBuf, nil)), nil)
	off := func(sym string) uint64 { return testfix.SymOff(t, path, sym) }
	if err := m.Write(Root, path, []byte("alpha_*\nalpha_t??\n")); !errnoIs(err, syscall.EEXIST) || !strings.Contains(err.Error(), `"alpha_two"`) {
		t.Fatalf("alpha_* then alpha_t?? in one write: %v, want EEXIST for alpha_two", err)
	}
	if ps := m.Probes(key); len(ps) != 0 {
		t.Fatalf("a refused batch left probes: %v", probeNames(ps))
	}
	mustWrite(t, m, path, "alpha_*\n")
	want := []string{"alpha_one", "alpha_three", "alpha_two"} // not alpha_data (data)
	if got := probeNames(m.Probes(key)); !slices.Equal(got, want) {
		t.Fatalf("alpha_* registered %v, want %v", got, want)
	}
	for _, name := range want {
		p := m.Probe(key, name)
		if p.Location != name || p.Offset != off(name) {
			t.Errorf("%s: location %q offset %#x, want %q %#x", name, p.Location, p.Offset, name, off(name))
		}
		if b := byteAt(t, w, key, off(name)); b != 0xcc {
			t.Errorf("%s: byte %#x, want the breakpoint", name, b)
		}
	}
	if got, want := byteAt(t, w, key, off("beta_one")), fileByte(t, path, off("beta_one")); got != want {
		t.Errorf("beta_one byte %#x, want the file's %#x", got, want)
	}
	for range 2 {
		w.Hit(key, off("alpha_two"))
	}
	w.Hit(key, off("alpha_one"))
	if a, b, c := m.Probe(key, "alpha_one").Hits(), m.Probe(key, "alpha_two").Hits(), m.Probe(key, "alpha_three").Hits(); a != 1 || b != 2 || c != 0 {
		t.Fatalf("hits one=%d two=%d three=%d, want 1 2 0", a, b, c)
	}

	// A function whose first instruction cannot be probed is left out.
	mustWrite(t, m, path, "beta_*\nodd_*\n")
	want = []string{"alpha_one", "alpha_three", "alpha_two", "beta_one", "beta_two", "odd_ok"}
	if got := probeNames(m.Probes(key)); !slices.Equal(got, want) {
		t.Fatalf("probes %v, want %v", got, want)
	}
	if l := logBuf.String(); !strings.Contains(l, "function left out") || !strings.Contains(l, "odd_trap") || !strings.Contains(l, "int3") {
		t.Fatalf("the log does not name odd_trap as left out:\n%s", l)
	}

	// Refusals, each leaving the probes as they were.
	for in, want := range map[string]struct {
		errno  syscall.Errno
		reason string
	}{
		"odd_t*\n":     {syscall.ENOENT, "none of which can be probed: odd_trap"},
		"gamma*\n":     {syscall.ENOENT, "matches no function symbol"},
		"alpha_dat?\n": {syscall.ENOENT, "matches no function symbol"}, // data, not a function
		"alpha_o*\n":   {syscall.EEXIST, `a probe named "alpha_one" exists`},
		"many_*\nx=\n": {syscall.EINVAL, "line 2"},
	} {
		err := m.Write(Root, path, []byte(in))
		if !errnoIs(err, want.errno) || !strings.Contains(err.Error(), want.reason) {
			t.Errorf("write %q: %v, want %v with %q", in, err, want.errno, want.reason)
		}
	}
	if got := len(m.Probes(key)); got != 6 {
		t.Fatalf("%d probes after refusals, want 6", got)
	}
	if got := w.Calls(); len(got) != 1 || !strings.HasPrefix(got[0], "watch ") {
		t.Fatalf("world calls = %v, want one watch", got)
	}
}

// TestPatternLimit: a pattern matching more than the limit is refused
// before anything is registered.
func TestPatternLimit(t *testing.T) {
	m, _, path, key := newGlobMgr(t)
	defer func(n int) { patternLimit = n }(patternLimit)
	patternLimit = 100
	err := m.Write(Root, path, []byte("many_*\n"))
	if !errnoIs(err, syscall.E2BIG) || !strings.Contains(err.Error(), "matches 1000 function symbols") || !strings.Contains(err.Error(), "at most 100") {
		t.Fatalf("many_* over the limit: %v, want E2BIG with the count and the limit", err)
	}
	if len(m.Probes(key)) != 0 {
		t.Fatal("probes registered")
	}
	mustWrite(t, m, path, "many_1?\n") // 10 matches
	if MaxPatternMatches < 1000 {
		t.Fatalf("MaxPatternMatches %d: the 1,000 probes of one pattern must fit", MaxPatternMatches)
	}
}

// TestPatternRemove: -PATTERN removes every matching probe in one write,
// probes staged earlier in the same write included; only the caller's own
// for a caller other than root.
func TestPatternRemove(t *testing.T) {
	m, w, path, key := newGlobMgr(t)
	mustWrite(t, m, path, "many_*\n")
	if got := len(m.Probes(key)); got != 1000 {
		t.Fatalf("many_* registered %d probes, want 1000", got)
	}
	// many_1, many_10..many_19, many_100..many_199.
	mustWrite(t, m, path, "-many_1*\n")
	ps := m.Probes(key)
	if len(ps) != 1000-111 {
		t.Fatalf("%d probes left after -many_1*, want %d", len(ps), 1000-111)
	}
	for _, p := range ps {
		if strings.HasPrefix(p.Name, "many_1") {
			t.Fatalf("%s left", p.Name)
		}
	}
	for _, sym := range []string{"many_1", "many_15", "many_199"} {
		o := testfix.SymOff(t, path, sym)
		if got, want := byteAt(t, w, key, o), fileByte(t, path, o); got != want {
			t.Errorf("%s byte %#x after removal, want %#x", sym, got, want)
		}
	}
	if b := byteAt(t, w, key, testfix.SymOff(t, path, "many_2")); b != 0xcc {
		t.Errorf("many_2 byte %#x, want the breakpoint", b)
	}
	// Added and removed in one write: nothing of it stays.
	mustWrite(t, m, path, "alpha_*\n-alpha_t*\n")
	if m.Probe(key, "alpha_one") == nil || m.Probe(key, "alpha_two") != nil || m.Probe(key, "alpha_three") != nil {
		t.Fatalf("after alpha_* -alpha_t*: %v", probeNames(m.Probes(key)))
	}
	if err := m.Write(Root, path, []byte("-gamma*\n")); !errnoIs(err, syscall.ENOENT) || !strings.Contains(err.Error(), "matches no probe") {
		t.Fatalf("-gamma*: %v, want ENOENT", err)
	}
	nobody := Caller{Uid: 65534}
	if err := m.Write(nobody, path, []byte("-many_*\n")); !errnoIs(err, syscall.EPERM) || !strings.Contains(err.Error(), "only probes of other users") {
		t.Fatalf("-many_* by another user: %v, want EPERM", err)
	}
	mustWrite(t, m, path, "-*\n")
	if ps := m.Probes(key); len(ps) != 0 {
		t.Fatalf("-* left %v", probeNames(ps))
	}
	if got := w.Calls(); len(got) != 2 || !strings.HasPrefix(got[1], "unwatch ") {
		t.Fatalf("world calls = %v, want watch, unwatch", got)
	}
}

// TestBatchOneWatch: a write of 1,000 lines has the world find and attach
// the file's processes once (one Watch), and one pattern write removing
// them all unwatches once.
func TestBatchOneWatch(t *testing.T) {
	m, w, path, key := newGlobMgr(t)
	var lines strings.Builder
	for i := range 1000 {
		lines.WriteString("many_" + strconv.Itoa(i) + "\n")
	}
	mustWrite(t, m, path, lines.String())
	if got := len(m.Probes(key)); got != 1000 {
		t.Fatalf("%d probes, want 1000", got)
	}
	if got := w.Calls(); len(got) != 1 || !strings.HasPrefix(got[0], "watch ") {
		t.Fatalf("world calls after one write of 1000 lines = %v, want one watch", got)
	}
	mustWrite(t, m, path, "-many_*\n")
	if got := w.Calls(); len(got) != 2 || !strings.HasPrefix(got[1], "unwatch ") {
		t.Fatalf("world calls = %v, want watch, unwatch", got)
	}
}

// TestPatternAmbiguous: a name with two local definitions (two files of
// one program) is left out of a pattern, with the reason.
func TestPatternAmbiguous(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.c"), filepath.Join(dir, "b.c")
	for path, src := range map[string]string{
		a: "static void __attribute__((noinline)) dup_fn(void) { __asm__ volatile(\"\"); }\nvoid dup_call_a(void) { dup_fn(); }\nint main(void) { return 0; }\n",
		b: "static void __attribute__((noinline)) dup_fn(void) { __asm__ volatile(\"nop\"); }\nvoid dup_call_b(void) { dup_fn(); }\n",
	} {
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := testfix.CC(t, a, "-O0", "-fcf-protection=none", b) // gcc ... b.c a.c
	m, _, key := newMgrOn(t, bin, nil, nil)
	if err := m.Write(Root, bin, []byte("dup_f*\n")); !errnoIs(err, syscall.ENOENT) || !strings.Contains(err.Error(), "dup_fn is ambiguous") {
		t.Fatalf("dup_f*: %v, want ENOENT naming the ambiguous dup_fn", err)
	}
	if err := m.Write(Root, bin, []byte("dup_*\n")); err != nil {
		t.Fatal(err)
	}
	if got, want := probeNames(m.Probes(key)), []string{"dup_call_a", "dup_call_b"}; !slices.Equal(got, want) {
		t.Fatalf("dup_* registered %v, want %v (dup_fn left out)", got, want)
	}
}
