package fetch

import (
	"fmt"
	"strings"
	"testing"
)

func evalOne(t *testing.T, arg string, isReturn bool, ctx Context) string {
	t.Helper()
	args, err := Parse([]string{arg}, isReturn)
	if err != nil {
		t.Fatalf("Parse(%q): %v", arg, err)
	}
	return args[0].Eval(ctx)
}

// evalCases are arguments and their values in world().
var evalCases = []struct{ arg, want string }{
	// registers: tracefs names are the whole 64-bit register
	{"%di", "0x1000"}, {"%ax", "0xabcdef"}, {"%ip", "0x401000"}, {"%sp", "0x7000"},
	{"%flags", "0x246"}, {"%orig_ax", "0xffffffffffffffff"}, {"%cs", "0x33"}, {"%ss", "0x2b"},
	{"%r8", "0x8"}, {"%r15", "0xf"}, {"%bx", "0x102030405060708"},
	// assembler names
	{"%rax", "0xabcdef"}, {"%eflags", "0x246"}, {"%rcx", "0x1122334455667788"},
	{"%ecx", "0x55667788"}, {"%r8d", "0x8"}, {"%cl", "0x88"}, {"%ch", "0x77"},
	{"%bh", "0x7"}, {"%bl", "0x8"}, {"%r9w", "0x9"}, {"%r10b", "0xa"}, {"%fs_base", "0x7f0000001000"},
	// types cut the value and print it
	{"%cx:u8", "136"}, {"%cx:u16", "30600"}, {"%cx:u32", "1432778632"},
	{"%cx:u64", "1234605616436508552"}, {"%si:s8", "-2"}, {"%si:s16", "-2"},
	{"%si:s32", "-2"}, {"%si:s64", "-2"}, {"%si:u64", "18446744073709551614"},
	{"%cx:x8", "0x88"}, {"%cx:x16", "0x7788"}, {"%cx:x32", "0x55667788"},
	{"%cx:x64", "0x1122334455667788"}, {"%ip:symbol", "main+0x0"},
	{"%sp:symbol", "0x7000"}, {`\65:char`, "'A'"},
	// bitfields: b<width>@<offset>/<container>
	{"%cx:b4@4/8", "8"}, {"%cx:b4@0/8", "8"}, {"%cx:b8@8/16", "119"}, {"%cx:b1@63/64", "0"},
	{"%cx:b16@48/64", "4386"},
	// $-variables
	{"$stack", "0x7000"}, {"$stack0", "0x401234"}, {"$stack1", "0x7"}, {"$stack3", "0x9"},
	{"$stack4", "0x0"}, {"$stack999999", "0x0"}, {"$comm", `"fixture"`}, {"$COMM", `"fixture"`},
	{"$comm:string", `"fixture"`},
	// $argN: System V registers, then the stack above the return address
	{"$arg1", "0x1000"}, {"$arg2", "0xfffffffffffffffe"}, {"$arg3", "0x2000"},
	{"$arg4", "0x1122334455667788"}, {"$arg5", "0x8"}, {"$arg6", "0x9"},
	{"$arg7", "0x7"}, {"$arg8", "0x8"}, {"$arg9", "0x9"}, {"$arg10", "0x0"},
	{"$arg2:s32", "-2"},
	// immediates
	{`\42`, "0x2a"}, {`\42:u8`, "42"}, {`\0x10:u32`, "16"}, {`\010:u32`, "8"},
	{`\-1:s32`, "-1"}, {`\-1`, "0xffffffffffffffff"}, {`\+5:s8`, "5"}, {`\"imm str"`, "(fault)"},
	{`\"a\"b"`, "(fault)"}, {`\"":string`, "(fault)"}, {`\0x2000:string`, `"hello"`},
	// memory
	{"@0x1008:u32", "5"}, {"@4104:u32", "5"}, {"@0x100c:s32", "-3"}, {"@0x1000", "0x2000"},
	{"@0x1000:string", `""`}, {"@+0x40", "0x2000"}, {"@+0x48:u32", "5"},
	{"@+0x1040:string", `"hello"`},
	// dereferences, nested; "u" changes nothing
	{"+0(%di)", "0x2000"}, {"+8(%di):u32", "5"}, {"+12(%di):s32", "-3"},
	{"+0(%di):string", `""`}, {"+0(+0(%di)):string", `"hello"`},
	{"+1(+0(%di)):string", `"ello"`}, {"+8(+16(%di)):u32", "5"}, {"+8(+16(+16(+16(%di)))):u32", "5"},
	{"+u8(%di):u32", "5"}, {"-u8(+16(%di)):u32", "0"}, {"-0x1000(+8(+0x8(%sp))):u8", "(fault)"},
	{"+0(%dx):string", `"hello"`}, {"+0(%dx):ustring", `"hello"`}, {"+0(%dx):u8", "104"},
	{"+0(%dx):char", "'h'"}, {"+0(%dx):x32", "0x6c6c6568"}, {"-0x1000(%dx)", "0x2000"},
	{"+0($stack):symbol", "0x401234"}, {"+0($arg1):x64", "0x2000"}, {"+8($arg1):u32", "5"},
	{"+0(@+0x40):string", `"hello"`}, {"+0(\\0x2000):string", `"hello"`},
	// strings near faults and limits
	{"+0(%bp):u32", "1144201745"}, {"+0(%bp):x64", "0x44332211"}, {"+4(%bp):u32", "0"},
	{"@0x3ff4:string", `"end at page"`}, {"@0x5ffa:string", "(fault)"},
	{"@0x10000:string", `"` + strings.Repeat("a", MaxString-1) + `"`},
	{"@0x12000:string", "(fault)"}, {"@0x12001:string", "(fault)"},
	// faults: the last read keeps what it read; an earlier one is (fault)
	{"@0x9000:u32", "0"}, {"+0(%ax):u64", "0"}, {"+0(+0(%ax)):u64", "(fault)"},
	{"+0(%ax):string", "(fault)"}, {"+0(+0(%ax)):string", "(fault)"}, {"@+0x20000", "(fault)"},
}

func TestEval(t *testing.T) {
	mem, regs := world(t)
	ctx := Context{
		Regs: regs, Mem: mem, Comm: "fixture", Retval: 0xfffffffffffffff4,
		Symbolize: func(v uint64) string {
			if v >= 0x401000 && v < 0x401100 {
				return fmt.Sprintf("main+0x%x", v-0x401000)
			}
			return ""
		},
		FileOffset: func(off uint64) (uint64, bool) { return 0x1000 - 0x40 + off, off < 0x10000 },
	}
	for _, c := range evalCases {
		if got := evalOne(t, c.arg, false, ctx); got != c.want {
			t.Errorf("Eval(%q) = %q, want %q", c.arg, got, c.want)
		}
	}
	// $retval, only on return probes; its own value, not rax.
	for arg, want := range map[string]string{"$retval": "0xfffffffffffffff4", "$retval:s32": "-12", "$retval:u8": "244"} {
		if got := evalOne(t, arg, true, ctx); got != want {
			t.Errorf("Eval(%q) = %q, want %q", arg, got, want)
		}
	}
}

func TestEvalEmptyContext(t *testing.T) {
	// Nothing set: registers read 0, memory faults, no symbols, no panic.
	cases := map[string]string{
		"%di": "0x0", "$stack": "0x0", "$stack2": "0x0", "$arg3": "0x0", "$arg8": "0x0",
		"+0(%di):u32": "0", "+0(+0(%di)):u32": "(fault)", "+0(%di):string": "(fault)",
		"@+0x10": "(fault)", "$comm": `""`, "%ip:symbol": "0x0", "@0x10:u8": "0",
	}
	for arg, want := range cases {
		if got := evalOne(t, arg, false, Context{}); got != want {
			t.Errorf("Eval(%q) in an empty context = %q, want %q", arg, got, want)
		}
	}
	if got := evalOne(t, "$retval", true, Context{}); got != "0x0" {
		t.Errorf("$retval in an empty context = %q", got)
	}
}

func TestFormat(t *testing.T) {
	mem, regs := world(t)
	args, err := Parse([]string{"%di", "len=+8(%di):u32", "name=+0(+0(%di)):string", "$comm", `\7:s8`}, false)
	if err != nil {
		t.Fatal(err)
	}
	got := Format(args, Context{Regs: regs, Mem: mem, Comm: "bash"})
	want := ` arg1=0x1000 len=5 name="hello" arg4="bash" arg5=7`
	if got != want {
		t.Errorf("Format = %q, want %q", got, want)
	}
	if got := Format(nil, Context{}); got != "" {
		t.Errorf("Format(nil) = %q", got)
	}
}

func TestReadsMemory(t *testing.T) {
	cases := map[string]bool{
		"%di": false, "$stack": false, "$comm": false, `\1`: false, `\"s"`: false,
		"$arg6": false, "%ip:symbol": false, "$retval": false,
		"$arg7": true, "$stack0": true, "+0(%di)": true, "@0x10": true, "@+0x10": true,
		`\0x10:string`: true, "+0(%si):string": true,
	}
	for arg, want := range cases {
		args, err := Parse([]string{arg}, true)
		if err != nil {
			t.Fatalf("Parse(%q): %v", arg, err)
		}
		if got := args[0].ReadsMemory(); got != want {
			t.Errorf("ReadsMemory(%q) = %v, want %v", arg, got, want)
		}
		if got := args[0].UsesRetval(); got != (arg == "$retval") {
			t.Errorf("UsesRetval(%q) = %v", arg, got)
		}
	}
}

// TestStringReadsPages checks that a string is read a page at a time, not
// byte by byte nor MaxString bytes past an unmapped page.
func TestStringReadsPages(t *testing.T) {
	mem, regs := world(t)
	mem.reads = 0
	if got := evalOne(t, "@0x3ff4:string", false, Context{Regs: regs, Mem: mem}); got != `"end at page"` {
		t.Fatal(got)
	}
	if mem.reads != 1 {
		t.Errorf("a string within a page took %d reads, want 1", mem.reads)
	}
	mem.reads = 0
	evalOne(t, "@0x10000:string", false, Context{Regs: regs, Mem: mem})
	if mem.reads != 1 {
		t.Errorf("a page-aligned %d-byte string took %d reads, want 1", MaxString, mem.reads)
	}
}
