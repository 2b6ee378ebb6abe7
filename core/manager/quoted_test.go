package manager

import (
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestQuotedGoSymbols: package-path symbols of a real Go binary register in
// the quoted form, under a default name without the import path's
// directories (or a given one); the listing keeps one line per probe and
// the probes are at the symbols' offsets.
func TestQuotedGoSymbols(t *testing.T) {
	path := testfix.GoTarget(t)
	m, _, key := newMgrOn(t, path, nil, nil)
	tick, tock := testfix.SymOff(t, path, testfix.GoTick), testfix.SymOff(t, path, testfix.GoTock)

	in := `"` + testfix.GoTick + `"` + "\n" +
		`tk="` + testfix.GoTock + `"+0` + "\n" +
		`p:mm "main.main"` + "\n" +
		`"` + testfix.GoTock + `"` + "\n"
	mustWrite(t, m, path, in)
	want := `main.main@main.main pkg.(*T).Tock@"example.com/gofix/pkg.(*T).Tock" pkg.Tick@"example.com/gofix/pkg.Tick" tk@"example.com/gofix/pkg.(*T).Tock"`
	want = strings.Replace(want, "main.main@", "mm@", 1)
	if got := names(m.Probes(key)); got != want {
		t.Fatalf("probes = %s\nwant     %s", got, want)
	}
	if p := m.Probe(key, "pkg.Tick"); p == nil || p.Offset != tick {
		t.Fatalf("pkg.Tick at %v, want %#x", p, tick)
	}
	if p := m.Probe(key, "tk"); p == nil || p.Offset != tock {
		t.Fatalf("tk at %v, want %#x", p, tock)
	}
	// A default name with a '*' (a Go method) is removed by its name: as
	// a pattern, it matches itself, and here nothing else.
	if err := m.Write(Root, path, []byte("-pkg.(*T).Tock\n")); err != nil {
		t.Fatalf("-pkg.(*T).Tock: %v", err)
	}
	if m.Probe(key, "pkg.(*T).Tock") != nil || m.Probe(key, "tk") == nil {
		t.Fatalf("after -pkg.(*T).Tock: %s", names(m.Probes(key)))
	}
	// (core/sim maps a file at Base+offset, as a PIE: it cannot run this
	// non-PIE Go binary's hits; test/integration does, on a real process.)
	for _, p := range m.Probes(key) {
		if l := p.ListingLine(); len(strings.Fields(l)) != 4 || strings.Count(l, "\n") != 1 {
			t.Errorf("listing line %q", l)
		}
	}
	// Unquoted, a symbol with '/' is refused with a hint to quote it.
	err := m.Write(Root, path, []byte(testfix.GoTick+"\n"))
	if !errnoIs(err, syscall.EINVAL) || !strings.Contains(err.Error(), `quote`) {
		t.Fatalf("unquoted package-path symbol: %v, want EINVAL with a hint", err)
	}
	// The same default name twice is EEXIST; -NAME and the quoted form in one
	// batch replace it.
	if err := m.Write(Root, path, []byte(`"`+testfix.GoTick+`"`+"\n")); !errnoIs(err, syscall.EEXIST) {
		t.Fatalf("second pkg.Tick: %v, want EEXIST", err)
	}
	if err := m.Write(Root, path, []byte("-pkg.Tick\n"+`"`+testfix.GoTick+`"+0`+"\n")); err != nil {
		t.Fatalf("replace pkg.Tick: %v", err)
	}
	if p := m.Probe(key, "pkg.Tick"); p == nil || p.Offset != tick {
		t.Fatalf("pkg.Tick after the replacement: %v", p)
	}
}

func TestDefaultName(t *testing.T) {
	for loc, want := range map[string]string{
		`"github.com/x/y.F"`:                       "y.F",
		`"github.com/x/y.(*T).M"+0x4`:              "y.(*T).M+0x4",
		`"main.F[go.shape.int]"`:                   "main.F[go.shape.int]",
		`"github.com/x/y.F[github.com/x/z.T]"`:     "y.F[github.com/x/z.T]",
		`main.main`:                                "main.main",
		`"type:.eq.github.com/x/y.T"`:              "y.T",
		`"go.shape.struct { a int }"`:              "go.shape.struct { a int }",
		canonicalLocation(`"github.com/x/y.F"+16`): "y.F+0x10",
	} {
		if got := defaultName(loc); got != want {
			t.Errorf("defaultName(%s) = %q, want %q", loc, got, want)
		}
	}
	for loc, want := range map[string]string{
		`"main.main"`:      "main.main",
		`"main.main"+0`:    "main.main",
		`"a/b.F"+16`:       `"a/b.F"+0x10`,
		`"a\x2fb.F"`:       `"a/b.F"`,
		`"type:.eq.T"+010`: `"type:.eq.T"+0x8`,
	} {
		if got := canonicalLocation(loc); got != want {
			t.Errorf("canonicalLocation(%s) = %s, want %s", loc, got, want)
		}
	}
}

func TestParseQuoted(t *testing.T) {
	for in, want := range map[string]Op{
		`"a b"+4`:                    {Location: `"a b"+4`},
		`n="x=y z"`:                  {Name: "n", Location: `"x=y z"`},
		`p:n "github.com/x/y.F"+0x4`: {Name: "n", Location: `"github.com/x/y.F"+0x4`},
		`"a\"b"`:                     {Location: `"a\"b"`},
	} {
		ops, err := ParseProbeLines(in)
		if err != nil || len(ops) != 1 || !reflect.DeepEqual(ops[0], want) {
			t.Errorf("ParseProbeLines(%s) = %+v, %v; want %+v", in, ops, err, want)
		}
	}
	for _, in := range []string{`"unterminated`, `"a"b`, `"a"+`, `""`, `p:n "a b"`, `"a"=main`} {
		if ops, err := ParseProbeLines(in); !errnoIs(err, syscall.EINVAL) {
			t.Errorf("ParseProbeLines(%s) = %+v, %v; want EINVAL", in, ops, err)
		}
	}
}
