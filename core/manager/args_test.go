package manager

import (
	"strings"
	"syscall"
	"testing"
)

// TestFetchArgLines: p:NAME LOCATION FETCHARGS parses into Op.Args as
// tracefs lists them; bad arguments are EINVAL with a reason naming the
// faulty token.
func TestFetchArgLines(t *testing.T) {
	ops, err := ParseProbeLines("p:x main n=$arg1 %si s=+0(%di):string v=+8(+0(%di)):u32 c=$comm\n")
	if err != nil || len(ops) != 1 {
		t.Fatalf("ParseProbeLines: %v, %v", ops, err)
	}
	var got []string
	for _, a := range ops[0].Args {
		got = append(got, a.String())
	}
	if s := strings.Join(got, " "); s != "n=$arg1 arg2=%si s=+0(%di):string v=+8(+0(%di)):u32 c=$comm" {
		t.Fatalf("args %q", s)
	}
	for line, token := range map[string]string{
		"p:x main %zz":               "%zz",
		"p:x main +0(%di":            "+0(%di",
		"p:x main $retval":           "$retval",
		"p:x main n=%di:u7":          "u7",
		"p:x main n=%di m=%si n=%dx": "n",
		"p:x main 1n=%di":            "1n",
		"p:x main @":                 "@",
		"p:x main $stackx":           "$stackx",
		"p:x main $argx":             "$argx",
		"p:x main n=":                "n=",
		"p:x main \\zz":              "\\zz",
		"p:x main +0(+0(+0(+0(+0(+0(+0(+0(+0(+0(+0(+0(+0(+0(+0(+0(+0(%di))))))))))))))))): ": "+0(",
		"p:x main %di:string":       "string",
		"p:x main +x(%di)":          "+x",
		"p:x main $foo":             "$foo",
		"p:x main n=%di:symbolx":    "symbolx",
		"p:x main @+zz":             "@+zz",
		"p:x main +0(%di):b99@0/32": "b99",
		"p:x main n=@0x10:x128":     "x128",
		"p:x main $comm:u8[":        "u8[",
		"r:x main n=%zz":            "%zz",
		"r:x":                       "",
	} {
		_, err := ParseProbeLines(line + "\n")
		if !errnoIs(err, syscall.EINVAL) {
			t.Errorf("%q: %v, want EINVAL", line, err)
			continue
		}
		if token != "" && !strings.Contains(err.Error(), token) {
			t.Errorf("%q: %v: the reason does not name %q", line, err, token)
		}
	}
}
