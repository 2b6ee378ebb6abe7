package fetch

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/core/install"
)

func TestParseNames(t *testing.T) {
	args, err := Parse([]string{"%di", "len=+8(%di):u32", "$comm", `x_1=\"s"`, "_=%ip:symbol"}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, body, typ, str string }{
		{"arg1", "%di", "x64", "arg1=%di"},
		{"len", "+8(%di):u32", "u32", "len=+8(%di):u32"},
		{"arg3", "$comm", "string", "arg3=$comm"},
		{"x_1", `\"s"`, "string", `x_1=\"s"`},
		{"_", "%ip:symbol", "symbol", "_=%ip:symbol"},
	}
	for i, w := range want {
		a := args[i]
		if a.Name != w.name || a.Body != w.body || a.Type != w.typ || a.String() != w.str {
			t.Errorf("arg %d = {%q %q %q %q}, want %v", i, a.Name, a.Body, a.Type, a.String(), w)
		}
	}
	if args, err := Parse(nil, false); err != nil || len(args) != 0 {
		t.Errorf("Parse(nil) = %v, %v", args, err)
	}
}

func TestParseLimits(t *testing.T) {
	many := make([]string, MaxArgs+1)
	for i := range many {
		many[i] = "%ax"
	}
	if args, err := Parse(many[:MaxArgs], false); err != nil || len(args) != MaxArgs {
		t.Errorf("%d args: %d, %v", MaxArgs, len(args), err)
	}
	wantErr(t, many, false, MaxArgs, reasonTooManyArgs, "%ax")

	name := strings.Repeat("n", MaxNameLen)
	ok(t, name+"=%ax")
	wantErr(t, []string{name + "n=%ax"}, false, 0, reasonArgNameLong, name+"n")

	body := "+0(%ax):u64"
	body = strings.Repeat("+0(", 0) + "+" + strings.Repeat("0", MaxArgLen-len(body)) + body[1:]
	if len(body) != MaxArgLen {
		t.Fatalf("bad test: %d", len(body))
	}
	ok(t, body)
	ok(t, "n="+body)
	wantErr(t, []string{"n=" + body + "0"}, false, 0, reasonArgTooLong, body+"0")

	deref := func(n int) string { return strings.Repeat("+0(", n) + "%ax" + strings.Repeat(")", n) }
	// Fourteen reads: 14 dereferences, or 13 and an @.
	if len(deref(MaxDerefs)) > MaxArgLen {
		// MaxArgLen allows 14 "+0(" levels only with a short register.
		t.Logf("%d dereferences are %d bytes", MaxDerefs, len(deref(MaxDerefs)))
	}
	ok(t, strings.Repeat("+0(", MaxDerefs)+"%r8"+strings.Repeat(")", MaxDerefs))
	ok(t, strings.Repeat("+0(", MaxDerefs-1)+"@1"+strings.Repeat(")", MaxDerefs-1))
	wantErr(t, []string{strings.Repeat("+0(", MaxDerefs) + "@1" + strings.Repeat(")", MaxDerefs)}, false, 0, reasonTooManyOps, "")
	// A bitfield needs one more of tracefs's 16 instructions.
	ok(t, strings.Repeat("+0(", MaxDerefs-2)+"@1"+strings.Repeat(")", MaxDerefs-2)+":b1@0/8")
	wantErr(t, []string{strings.Repeat("+0(", MaxDerefs-1) + "@1" + strings.Repeat(")", MaxDerefs-1) + ":b1@0/8"}, false, 0, reasonBadBitfield, "b1@0/8")

	ok(t, fmt.Sprintf("$arg%d", MaxArgNum))
	wantErr(t, []string{fmt.Sprintf("$arg%d", MaxArgNum+1)}, false, 0, reasonBadArgNum, "")
	ok(t, "$stack4294967295")
	wantErr(t, []string{"$stack4294967296"}, false, 0, reasonBadStackNum, "$stack4294967296")
}

func ok(t *testing.T, arg string) {
	t.Helper()
	if _, err := Parse([]string{arg}, true); err != nil {
		t.Errorf("Parse(%q): %v", arg, err)
	}
}

// wantErr checks that Parse refuses args with an *Error wrapping ErrInvalid
// at argument index, with reason, naming token (unless token is "").
func wantErr(t *testing.T, args []string, isReturn bool, index int, reason, token string) {
	t.Helper()
	got, err := Parse(args, isReturn)
	if err == nil {
		t.Errorf("Parse(%q) = %v, want an error", args, got)
		return
	}
	if got != nil {
		t.Errorf("Parse(%q) returned args with its error", args)
	}
	var e *Error
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &e) {
		t.Errorf("Parse(%q): %v is not an *Error wrapping ErrInvalid", args, err)
		return
	}
	if e.Index != index || e.Reason != reason || (token != "" && e.Token != token) {
		t.Errorf("Parse(%q): %v; want index %d, reason %q, token %q (got %d %q %q)",
			args, err, index, reason, token, e.Index, e.Reason, e.Token)
	}
	if e.Pos < 0 || e.Pos > len(e.Arg) {
		t.Errorf("Parse(%q): position %d outside %q", args, e.Pos, e.Arg)
	}
	if msg := err.Error(); !strings.Contains(msg, reason) || !strings.Contains(msg, fmt.Sprintf("%q", e.Arg)) {
		t.Errorf("Parse(%q): message %q lacks the reason or the argument", args, msg)
	}
}

// errorCases are refused arguments: the reason, the token named, and the
// caret position (the argument is the second of its line).
var errorCases = []struct {
	arg, reason, token string
	pos                int
}{
	{"=%ax", reasonNoArgName, "", 0},
	{"1x=%ax", reasonBadArgName, "1x", 0},
	{"a-b=%ax", reasonBadArgName, "a-b", 0},
	{"common_pid=%ax", reasonUsedArgName, "common_pid", 0},
	{"__probe_ip=%ax", reasonUsedArgName, "__probe_ip", 0},
	{"x=", reasonNoArgBody, "", 2},
	{"", reasonNoArgBody, "", 0},
	{"%", reasonBadRegName, "%", 0},
	{"%zz", reasonBadRegName, "%zz", 0},
	{"%RAX", reasonBadRegName, "%RAX", 0},
	{"%ax:u128", reasonBadType, "u128", 4},
	{"%ax:", reasonBadType, "", 4},
	{"%ax:u32:u8", reasonBadType, "u32:u8", 4},
	{"%ax:string", reasonBadString, "string", 4},
	{"$stack:ustring", reasonBadString, "ustring", 7},
	{"%ax:b0@0/8", reasonBadBitfield, "b0@0/8", 4},
	{"%ax:b4@5/8", reasonBadBitfield, "b4@5/8", 4},
	{"%ax:b4/8", reasonBadBitfield, "b4/8", 4},
	{"%ax:b4@x/8", reasonBadBitfield, "b4@x/8", 4},
	{"%ax:b4@0/12", reasonBadType, "b4@0/12", 4},
	{"%ax:b4@0", reasonBadType, "b4@0", 4},
	{"%ax:u32[4]", reasonArray, "u32[4]", 4},
	{"+0(%ax):u32[4]", reasonArray, "u32[4]", 8},
	{"$comm:u32", reasonStringOnly, "u32", 6},
	{"$comm:", reasonStringOnly, "", 6},
	{"$comm:ustring", reasonStringOnly, "ustring", 6},
	{`\"x":x8`, reasonStringOnly, "x8", 5},
	{"$retval", reasonRetvalOnProbe, "$retval", 0},
	{"+0($retval)", reasonRetvalOnProbe, "$retval", 3},
	{"$stack-1", reasonBadVar, "$stack-1", 0},
	{"$stack1x", reasonBadVar, "$stack1x", 0},
	{"$stackx", reasonBadVar, "$stackx", 0},
	{"$foo", reasonBadVar, "$foo", 0},
	{"$", reasonBadVar, "$", 0},
	{"$arg", reasonBadVar, "$arg", 0},
	{"$arg0", reasonBadArgNum, "$arg0", 0},
	{"$arg1x", reasonBadVar, "$arg1x", 0},
	{"@", reasonSymOnUprobe, "@", 0},
	{"@main", reasonSymOnUprobe, "@main", 0},
	{"@0x", reasonBadMemAddr, "@0x", 0},
	{"@08", reasonBadMemAddr, "@08", 0},
	{"@1g", reasonBadMemAddr, "@1g", 0},
	{"@99999999999999999999", reasonBadMemAddr, "", 0},
	{"@+", reasonBadFileOffs, "@+", 0},
	{"@+x", reasonBadFileOffs, "@+x", 0},
	{"@+0x10z", reasonBadFileOffs, "@+0x10z", 0},
	{`\`, reasonBadImm, `\`, 1},
	{`\x`, reasonBadImm, `\x`, 1},
	{`\0x`, reasonBadImm, `\0x`, 1},
	{`\-`, reasonBadImm, `\-`, 1},
	{`\"abc`, reasonImmStrNoClose, `\"abc`, 5},
	{`\"`, reasonImmStrNoClose, `\"`, 2},
	{"+0", reasonDerefBrace, "+0", 0},
	{"-8%di", reasonDerefBrace, "-8%di", 0},
	{"+(%di)", reasonBadDerefOffs, "+(%di)", 0},
	{"+x(%di)", reasonBadDerefOffs, "+x(%di)", 0},
	{"+0x100000000(%di)", reasonBadDerefOffs, "+0x100000000(%di)", 0},
	{"+0(%di", reasonDerefOpen, "+0(%di", 6},
	{"+0(%di)x", reasonDerefTrailing, "x", 7},
	{"+0(+0(%di)", reasonDerefOpen, "+0(%di", 9},
	{"+0((%di))", reasonBadFetchArg, "(%di)", 3},
	{"+0()", reasonBadFetchArg, "", 3},
	{"+0(%zz)", reasonBadRegName, "%zz", 3},
	{"+u4(%zz)", reasonBadRegName, "%zz", 4},
	{"-u4(+8(%zz))", reasonBadRegName, "%zz", 7},
	{"+0($comm)", reasonCommCantDeref, "$comm", 3},
	{`+0(\"s")`, reasonCommCantDeref, `\"s"`, 3},
	{"main", reasonBadFetchArg, "main", 0},
	{"42", reasonBadFetchArg, "42", 0},
	{"n=main", reasonBadFetchArg, "main", 2},
	{"n=%zz", reasonBadRegName, "%zz", 2},
	{"n=+8(%zz)", reasonBadRegName, "%zz", 5},
}

func TestParseErrors(t *testing.T) {
	kinds := map[string]bool{}
	for _, c := range errorCases {
		kinds[c.reason] = true
		wantErr(t, []string{"%ip", c.arg}, false, 1, c.reason, c.token)
		_, err := Parse([]string{"%ip", c.arg}, false)
		var e *Error
		if errors.As(err, &e) && e.Pos != c.pos {
			t.Errorf("Parse(%q): error at byte %d, want %d (%v)", c.arg, e.Pos, c.pos, err)
		}
	}
	// Names: default argN names collide with given ones, as in tracefs.
	wantErr(t, []string{"a=%ax", "a=%bx"}, false, 1, reasonUsedArgName, "a")
	wantErr(t, []string{"arg2=%ax", "%bx"}, false, 1, reasonUsedArgName, "arg2")
	kinds[reasonUsedArgName] = true
	if len(kinds) < 20 {
		t.Errorf("only %d kinds of errors tested", len(kinds))
	}
}

// acceptCases are spellings tracefs accepts (kstrtoul/kstrtol base rules
// included).
var acceptCases = []string{
	"@0", "@010", "@0x10", "@0X1f", "@+0", "@+-0x10", "@++5", "@+010",
	`\0`, `\-0`, `\+0x10`, `\+-5`, `\18446744073709551615`, `\""`, `\"a b"`,
	"+0(%di)", "-0(%di)", "+0x10(%di)", "-0x10(%di)", "+010(%di)", "++1(%di)",
	"+u0(%di)", "-u0x8(%di)", "+0(+0(+0(%di))):string",
	"$stack0", "$stack00", "$stack18", "$comm", "$COMM", "$arg1", "$arg2048", "$arg07", "$arg+1",
	"%ax:b1@0/8", "%ax:b64@0/64", "%ax:b0x4@0x4/0x8", "%ax:b1@0/010", "%ax:char",
	"%ax:x8", "%ax:symbol", "@1:string", "@+1:ustring", `\1:string`,
}

func TestParseAccepts(t *testing.T) {
	for _, arg := range acceptCases {
		ok(t, arg)
	}
}

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
