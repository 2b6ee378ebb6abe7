package manager

import (
	"strings"
	"testing"
	"time"
)

func TestEscape(t *testing.T) {
	for _, c := range []struct{ in, field, text string }{
		{"/usr/bin/x", "/usr/bin/x", "/usr/bin/x"},
		{"a b\nc", `a\040b\012c`, `a b\012c`},
		{"t\tr\re\x1b[0m\x7f", `t\011r\015e\033[0m\177`, `t\011r\015e\033[0m\177`},
		{`back\slash`, `back\134slash`, `back\134slash`},
		{"\x00é", `\000é`, `\000é`},
	} {
		if got := EscapeField(c.in); got != c.field {
			t.Errorf("EscapeField(%q) = %q, want %q", c.in, got, c.field)
		}
		if got := EscapeText(c.in); got != c.text {
			t.Errorf("EscapeText(%q) = %q, want %q", c.in, got, c.text)
		}
		if got := Unescape(EscapeField(c.in)); got != c.in {
			t.Errorf("Unescape(EscapeField(%q)) = %q", c.in, got)
		}
		if got := Unescape(EscapeText(c.in)); got != c.in {
			t.Errorf("Unescape(EscapeText(%q)) = %q", c.in, got)
		}
	}
}

func FuzzEscape(f *testing.F) {
	f.Add("a b\nc\\d")
	f.Fuzz(func(t *testing.T, s string) {
		for _, e := range []string{EscapeField(s), EscapeText(s)} {
			if strings.ContainsAny(e, "\n\r") || Unescape(e) != s {
				t.Fatalf("escape(%q) = %q", s, e)
			}
		}
		if strings.Contains(EscapeField(s), " ") {
			t.Fatalf("EscapeField(%q) has a space", s)
		}
	})
}

// TestErrorLineOneLine: an error entry whose path, input and reason hold
// newlines is one line, with the path as one field.
func TestErrorLineOneLine(t *testing.T) {
	p := "/tmp/a b\nc"
	e := ErrorEntry{Time: time.Unix(0, 0), Path: p, Input: "x\ny", Errno: 2, Reason: "no probe \"n\" on " + p}
	l := e.Line()
	if strings.Count(l, "\n") != 1 || !strings.HasSuffix(l, "\n") {
		t.Fatalf("Line() = %q: not one line", l)
	}
	f := strings.Fields(l)
	if got := Unescape(strings.TrimPrefix(f[4], "path=")); got != p {
		t.Fatalf("path field %q unescapes to %q", f[4], got)
	}
	if !strings.HasSuffix(l, `on /tmp/a b\012c`+"\n") {
		t.Fatalf("reason not escaped: %q", l)
	}
}
