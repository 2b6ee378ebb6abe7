package objfile

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// fixture is one compiled build of a C fixture.
type fixture struct {
	name     string // "prog-O2-pie", ...
	path     string
	prog     bool // the prog.c fixture (has the classes.h functions)
	stripped bool // .symtab removed; base is the unstripped build
	base     *fixture
}

// buildFixtures compiles the fixtures into private temp dirs of t: prog at
// -O0 and -O2, PIE and -no-pie; the shared library; stripped copies of the
// -O2 PIE program and of the library.
func buildFixtures(t *testing.T) []*fixture {
	t.Helper()
	type build struct {
		name, src string
		flags     []string
	}
	builds := []build{
		{"prog-O0-pie", "testdata/prog.c", []string{"-O0", "-pie", "-fPIE"}},
		{"prog-O2-pie", "testdata/prog.c", []string{"-O2", "-pie", "-fPIE"}},
		{"prog-O0-nopie", "testdata/prog.c", []string{"-O0", "-no-pie", "-fno-pie"}},
		{"prog-O2-nopie", "testdata/prog.c", []string{"-O2", "-no-pie", "-fno-pie"}},
		{"lib-O2.so", "testdata/lib.c", []string{"-O2", "-shared", "-fPIC"}},
	}
	fx := make([]*fixture, len(builds))
	for i, b := range builds {
		// testfix.CC calls tb.Fatal, which must run on the test goroutine:
		// compile serially, it takes well under a second each.
		fx[i] = &fixture{name: b.name, path: testfix.CC(t, b.src, b.flags...), prog: strings.HasPrefix(b.name, "prog")}
	}
	for _, base := range []*fixture{fx[1], fx[4]} {
		out := filepath.Join(t.TempDir(), filepath.Base(base.path)+".stripped")
		run(t, "strip", "-o", out, base.path)
		fx = append(fx, &fixture{name: base.name + "-stripped", path: out, prog: base.prog, stripped: true, base: base})
	}
	return fx
}

// run runs a tool with a deadline and returns its stdout.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.Bytes())
	}
	return stdout.String()
}

// openT opens path and closes it in t.Cleanup.
func openT(t testing.TB, path string) *File {
	t.Helper()
	f, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

type roSeg struct{ off, vaddr, filesz uint64 }

// readelfRows runs `readelf -W opt path` and returns the fields of each
// line of its output that has eight or more (the table rows).
func readelfRows(t testing.TB, opt, path string) [][]string {
	t.Helper()
	var rows [][]string
	sc := bufio.NewScanner(strings.NewReader(run(t, "readelf", "-W", opt, path)))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 8 {
			rows = append(rows, f)
		}
	}
	return rows
}

// readelfSegments parses the executable PT_LOAD lines of `readelf -W -l`.
func readelfSegments(t testing.TB, path string) []roSeg {
	t.Helper()
	var segs []roSeg
	for _, f := range readelfRows(t, "-l", path) {
		if f[0] != "LOAD" {
			continue
		}
		// LOAD Offset VirtAddr PhysAddr FileSiz MemSiz Flg... Align
		if !strings.Contains(strings.Join(f[6:len(f)-1], ""), "E") {
			continue
		}
		segs = append(segs, roSeg{off: hexT(t, f[1]), vaddr: hexT(t, f[2]), filesz: hexT(t, f[4])})
	}
	if len(segs) == 0 {
		t.Fatalf("readelf -l %s: no executable PT_LOAD", path)
	}
	return segs
}

func hexT(t testing.TB, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		t.Fatalf("parse hex %q: %v", s, err)
	}
	return v
}

type roSym struct {
	name        string
	value, size uint64
	global      bool
}

// readelfFuncs parses the defined FUNC symbols of `readelf -W -s` (.symtab
// and .dynsym), version suffixes removed.
func readelfFuncs(t testing.TB, path string) []roSym {
	t.Helper()
	var syms []roSym
	for _, f := range readelfRows(t, "-s", path) {
		// Num: Value Size Type Bind Vis Ndx Name [(ver)]
		if f[3] != "FUNC" || f[6] == "UND" {
			continue
		}
		size, err := strconv.ParseUint(f[2], 0, 64) // decimal, or 0x... when large
		if err != nil {
			t.Fatalf("readelf size %q: %v", f[2], err)
		}
		name := f[7]
		if i := strings.IndexByte(name, '@'); i > 0 {
			name = name[:i]
		}
		syms = append(syms, roSym{name: name, value: hexT(t, f[1]), size: size, global: f[4] != "LOCAL"})
	}
	return syms
}

// nmValues parses `nm -S --defined-only` (with dynamic, `nm -D`): name ->
// values of text symbols.
func nmValues(t testing.TB, path string, dynamic bool) map[string][]uint64 {
	t.Helper()
	args := []string{"--defined-only", path}
	if dynamic {
		args = append([]string{"-D"}, args...)
	}
	m := make(map[string][]uint64)
	sc := bufio.NewScanner(strings.NewReader(run(t, "nm", args...)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || !strings.ContainsAny(f[1], "TtWw") {
			continue
		}
		name := f[2]
		if i := strings.IndexByte(name, '@'); i > 0 {
			name = name[:i]
		}
		m[name] = append(m[name], hexT(t, f[0]))
	}
	return m
}

// fileOffset converts a virtual address with the readelf segments.
func fileOffset(segs []roSeg, v uint64) (uint64, bool) {
	for _, s := range segs {
		if v >= s.vaddr && v-s.vaddr < s.filesz {
			return v - s.vaddr + s.off, true
		}
	}
	return 0, false
}
