package manager

import (
	"fmt"
	"strconv"
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

// TestErrorLogBounded: huge inputs, reasons and paths are kept as bounded
// excerpts, and the log as a bounded number of entries and bytes, the
// newest kept.
func TestErrorLogBounded(t *testing.T) {
	m, _, _, _ := newMgr(t)
	big := strings.Repeat("x", 64<<10)
	for i := range 2000 {
		m.Refuse(Root, "/p/"+big, big+strconv.Itoa(i), errorf(2, "reason %d %s", i, big))
	}
	es := m.Errors()
	if len(es) == 0 || len(es) > errorLogSize {
		t.Fatalf("%d entries", len(es))
	}
	total := 0
	for i := range es {
		e := &es[i]
		total += e.size()
		if len(e.Input) > errInputExcerpt || e.InputLen != 64<<10+len(strconv.Itoa(1999-len(es)+1+i)) {
			t.Fatalf("entry %d: input %d bytes of %d", i, len(e.Input), e.InputLen)
		}
		if len(e.Reason) > errReasonMax+32 || len(e.Path) > errPathMax+32 {
			t.Fatalf("entry %d: reason %d bytes, path %d bytes", i, len(e.Reason), len(e.Path))
		}
	}
	if total > errorLogBytes {
		t.Fatalf("log holds %d bytes, bound %d", total, errorLogBytes)
	}
	if l := es[len(es)-1].Line(); !strings.Contains(l, "reason 1999 ") || !strings.Contains(l, fmt.Sprintf("...(%d bytes)", 64<<10+4)) {
		t.Fatalf("newest entry: %.200q", l)
	}
}
