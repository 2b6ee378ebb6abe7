package fetch

import (
	"errors"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/core/install"
)

// FuzzParse: Parse never panics; a refusal is an *Error wrapping ErrInvalid
// that points inside its argument; an accepted list evaluates without
// panicking in any context, and each Arg's String parses back to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"%di", "len=+8(%di):u32", "+0(+0(%si)):string", "$comm", `\"x"`, `\-1:s8`,
		"@0x1000:x32", "@+0x40:u64", "$stack3", "$arg7", "$retval:s32", "%ax:b4@2/8",
		"%ip:symbol", "-u8(+16(%sp)):x16", "+0(%di) +8(%di):u8 $arg2", "=%ax", "+0(%di",
		"a=%ax a=%bx", "%ax:u32[2]", `\"a:b"`, "+0x7fffffff(%ax)", "$stack18446744073709551615",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	mem, regs := world(&testing.T{})
	f.Fuzz(func(t *testing.T, line string, isReturn bool) {
		tokens := strings.Fields(line)
		args, err := Parse(tokens, isReturn)
		if err != nil {
			var e *Error
			if !errors.Is(err, ErrInvalid) || !errors.As(err, &e) {
				t.Fatalf("Parse(%q): %v is not an *Error wrapping ErrInvalid", tokens, err)
			}
			if e.Index < 0 || e.Index >= len(tokens) || e.Arg != tokens[e.Index] || e.Pos < 0 || e.Pos > len(e.Arg) || e.Reason == "" {
				t.Fatalf("Parse(%q): malformed error %+v", tokens, e)
			}
			if args != nil {
				t.Fatalf("Parse(%q) returned args with an error", tokens)
			}
			return
		}
		if len(args) != len(tokens) {
			t.Fatalf("Parse(%q) = %d args", tokens, len(args))
		}
		for _, ctx := range []Context{{}, {Regs: regs, Mem: mem, Comm: "c", Retval: 1,
			Symbolize:  func(uint64) string { return "" },
			FileOffset: func(off uint64) (uint64, bool) { return off, true }}, {Regs: &install.Regs{Rsp: ^uint64(0)}, Mem: mem}} {
			Format(args, ctx)
		}
		for i, a := range args {
			back, err := Parse([]string{a.String()}, isReturn)
			if err != nil || back[0].Name != a.Name || back[0].Body != a.Body || back[0].Type != a.Type {
				t.Fatalf("arg %d %q: String %q parses to %v, %v", i, tokens[i], a.String(), back, err)
			}
		}
	})
}
