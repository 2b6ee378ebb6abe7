package manager

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
)

func TestParseProbeLines(t *testing.T) {
	good := []struct {
		in   string
		want []Op
	}{
		{"0x4a0", []Op{{Location: "0x4a0"}}},
		{"1184\n", []Op{{Location: "1184"}}},
		{"  main  \r\n", []Op{{Location: "main"}}},
		{"main+0x10", []Op{{Location: "main+0x10"}}},
		{"x=main+4", []Op{{Name: "x", Location: "main+4"}}},
		{"x = main", []Op{{Name: "x", Location: "main"}}},
		{"p:x main", []Op{{Name: "x", Location: "main"}}},
		{"p:x\tmain", []Op{{Name: "x", Location: "main"}}},
		{"p main", []Op{{Location: "main"}}},
		{"p", []Op{{Location: "p"}}},
		{"-x", []Op{{Remove: true, Name: "x"}}},
		{"-:x", []Op{{Remove: true, Name: "x"}}},
		{"# comment\n\na\n-b\nc=d\n", []Op{{Location: "a"}, {Remove: true, Name: "b"}, {Name: "c", Location: "d"}}},
	}
	for _, tc := range good {
		got, err := ParseProbeLines(tc.in)
		if err != nil {
			t.Errorf("ParseProbeLines(%q): %v", tc.in, err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseProbeLines(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	bad := []string{
		"", "\n", "  \n# only a comment\n", "a\x00b", strings.Repeat("a", MaxLine+1),
		"r:x", "p:x main arg1=%zz", "p:x", "p:a/b main", "x=", "=main", "x=a=b",
		"-", "-:", "-a/b", "main junk", "/bin/bash:0x4a0", "x=-5", "p:x -5", "a\x01b",
		"x/y=main", "probes=main", "..=main", "-probes",
	}
	for _, in := range bad {
		if ops, err := ParseProbeLines(in); !errnoIs(err, syscall.EINVAL) {
			t.Errorf("ParseProbeLines(%q) = %v, %v; want EINVAL", in, ops, err)
		}
	}
}

func FuzzParseProbeLines(f *testing.F) {
	for _, s := range []string{"main", "x=main+4", "p:x 0x10", "-x", "a\nb\n", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ops, err := ParseProbeLines(s)
		if err != nil {
			if !errnoIs(err, syscall.EINVAL) {
				t.Fatalf("error %v is not EINVAL", err)
			}
			return
		}
		for _, op := range ops {
			if op.Remove {
				if checkName(op.Name) != nil {
					t.Fatalf("remove of bad name %q", op.Name)
				}
				continue
			}
			if op.Name != "" && checkName(op.Name) != nil {
				t.Fatalf("bad name %q accepted", op.Name)
			}
			if checkLocation(op.Location) != nil {
				t.Fatalf("bad location %q accepted", op.Location)
			}
		}
	})
}

func TestCanonicalLocation(t *testing.T) {
	for in, want := range map[string]string{
		"0x4A0": "0x4a0", "1184": "0x4a0", "0": "0x0", "main": "main", "main+0": "main",
		"main+16": "main+0x10", "main+0x10": "main+0x10", "a.b@GLIBC": "a.b@GLIBC",
	} {
		if got := canonicalLocation(in); got != want {
			t.Errorf("canonicalLocation(%q) = %q, want %q", in, got, want)
		}
	}
}
