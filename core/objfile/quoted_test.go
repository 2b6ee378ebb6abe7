package objfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestQuotedGoSymbols: package-path Go symbols of a real Go binary (built by
// the test) resolve in the quoted form; the plain form of a symbol with a
// '+' or a leading digit is refused, and malformed quotes are ErrSyntax.
func TestQuotedGoSymbols(t *testing.T) {
	path := testfix.GoTarget(t)
	f := openT(t, path)
	for _, sym := range []string{testfix.GoTick, testfix.GoTock, "main.main"} {
		want := testfix.SymOff(t, path, sym)
		got, err := f.Resolve(`"` + sym + `"`)
		if err != nil || got != want {
			t.Fatalf("Resolve(%q) = %#x, %v; want %#x", `"`+sym+`"`, got, err, want)
		}
		if _, err := f.Analyze(got); err != nil {
			t.Errorf("Analyze(%s at %#x): %v", sym, got, err)
		}
		if got, err := f.Resolve(`"` + sym + `"+0`); err != nil || got != want {
			t.Errorf("Resolve(%q+0) = %#x, %v", sym, got, err)
		}
	}
	tick := testfix.SymOff(t, path, testfix.GoTick)
	if got, err := f.Resolve(`"example.com/gofix/pkg.Tick"+0x1`); err != nil || got != tick+1 {
		t.Errorf("quoted +0x1 = %#x, %v", got, err)
	}
	if got, err := f.Resolve(`"example.com/gofix/pkg.\x54ick"`); err != nil || got != tick {
		t.Errorf("quoted with an escape = %#x, %v", got, err)
	}
	for _, loc := range []string{`"`, `""`, `"main.main`, `"main.main"x`, `"main.main"+`, `"main.main"+0x`, `"main.main"-1`, `"a\x00b"`, `"\q"`} {
		if _, err := f.Resolve(loc); !errors.Is(err, ErrSyntax) {
			t.Errorf("Resolve(%q) = %v, want ErrSyntax", loc, err)
		}
	}
	if _, err := f.Resolve(`"example.com/gofix/pkg.NoSuch"`); !errors.Is(err, ErrNoSymbol) {
		t.Errorf("unknown quoted symbol: %v, want ErrNoSymbol", err)
	}
	if _, err := f.Resolve(`"example.com/gofix/pkg.Tick"+0x100000`); !errors.Is(err, ErrPastSymbol) {
		t.Errorf("quoted past the symbol: %v, want ErrPastSymbol", err)
	}
}

// TestQuotedOddSymbols: symbols that only the quoted form can name (with
// ':', '+', a space, a leading digit), and a C++ mangled name in the plain
// form, on a real ELF file (asm labels, quoted for the assembler, give the symbols these names).
func TestQuotedOddSymbols(t *testing.T) {
	src := filepath.Join(t.TempDir(), "odd.c")
	os.WriteFile(src, []byte(`
__attribute__((noinline)) void f1(void) __asm__("\"type:.eq.a+b c\"");
__attribute__((noinline)) void f1(void) { __asm__ volatile("nop"); }
__attribute__((noinline)) void f2(void) __asm__("_ZN3foo3barEv");
__attribute__((noinline)) void f2(void) { __asm__ volatile("nop"); }
__attribute__((noinline)) void f3(void) __asm__("\"9lives\"");
__attribute__((noinline)) void f3(void) { __asm__ volatile("nop"); }
int main(void) { f1(); f2(); f3(); return 0; }
`), 0o644)
	path := testfix.CC(t, src, "-O0")
	f := openT(t, path)
	for loc, sym := range map[string]string{
		`"type:.eq.a+b c"`: "type:.eq.a+b c",
		`_ZN3foo3barEv`:    "_ZN3foo3barEv",
		`"_ZN3foo3barEv"`:  "_ZN3foo3barEv",
		`"9lives"`:         "9lives",
	} {
		want := testfix.SymOff(t, path, sym)
		if got, err := f.Resolve(loc); err != nil || got != want {
			t.Errorf("Resolve(%s) = %#x, %v; want %#x", loc, got, err, want)
		}
	}
	if _, err := f.Resolve("foo::bar"); err == nil {
		t.Error("a demangled C++ name resolved")
	}
}
