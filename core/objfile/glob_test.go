package objfile

import (
	"fmt"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true},
		{"*", "main", true},
		{"", "", true},
		{"", "a", false},
		{"main", "main", true},
		{"main", "mainx", false},
		{"ma?n", "main", true},
		{"ma?n", "man", false},
		{"?", "", false},
		{"ssl_*", "ssl_read", true},
		{"ssl_*", "ssl_", true},
		{"ssl_*", "SSL_read", false},
		{"ssl_*", "xssl_read", false},
		{"*alloc*", "malloc", true},
		{"*alloc*", "alloc", true},
		{"*alloc*", "__libc_calloc_impl", true},
		{"*alloc*", "free", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyycz", false},
		{"a*b*c", "acb", false},
		{"*a", "banana", true},
		{"*an", "banana", false},
		{"a**", "a", true},
		{"[ab]", "a", false}, // no classes: '[' is a plain byte
		{"[ab]", "[ab]", true},
		{`a\*`, `a\x`, true}, // no escapes: '\' is a plain byte
	} {
		if got := MatchPattern(tc.pattern, tc.name); got != tc.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
	if !IsPattern("a*") || !IsPattern("?") || IsPattern("main+0x4") {
		t.Error("IsPattern")
	}
	// The worst case stays polynomial.
	long := strings.Repeat("a", 4000)
	if MatchPattern(strings.Repeat("*a", 50)+"b", long) {
		t.Error("matched a name without b")
	}
}

// TestFunctions lists the function symbols of the glob fixture that
// patterns match: exactly the functions, never the data symbol, each once.
func TestFunctions(t *testing.T) {
	path := testfix.CC(t, testfix.Source("glob.c"), "-O0", "-fcf-protection=none")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		pattern string
		want    []string
	}{
		{"alpha_*", []string{"alpha_one", "alpha_three", "alpha_two"}}, // not alpha_data
		{"alpha_t??", []string{"alpha_two"}},
		{"*_one", []string{"alpha_one", "beta_one"}},
		{"beta_?*", []string{"beta_one", "beta_two"}},
		{"many_99?", []string{"many_990", "many_991", "many_992", "many_993", "many_994", "many_995", "many_996", "many_997", "many_998", "many_999"}},
		{"gamma*", nil},
		{"alpha_data", nil},
	} {
		got := f.Functions(tc.pattern)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("Functions(%q) = %v, want %v", tc.pattern, got, tc.want)
		}
		for _, name := range got {
			if _, err := f.Resolve(name); err != nil {
				t.Errorf("Functions(%q) listed %s, which does not resolve: %v", tc.pattern, name, err)
			}
		}
	}
	if n := len(f.Functions("many_*")); n != 1000 {
		t.Errorf("many_* matched %d functions, want 1000", n)
	}
	all := f.Functions("*")
	for _, want := range []string{"main", "alpha_one", "beta_two", "many_0", "many_999"} {
		if !strings.Contains(" "+strings.Join(all, " ")+" ", " "+want+" ") {
			t.Errorf("* does not list %s", want)
		}
	}
}
