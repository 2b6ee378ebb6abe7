package objfile

import (
	"bufio"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

var (
	objdumpFunc = regexp.MustCompile(`^([0-9a-f]+) <([^>]+)>:$`)
	objdumpInsn = regexp.MustCompile(`^\s+([0-9a-f]+):\s+(.*)$`)
)

// testBoundary checks, for every byte of every sized function of the
// fixture, that Analyze refuses it with ErrNotBoundary exactly when objdump
// does not start an instruction there.
func testBoundary(t *testing.T, fx *fixture) {
	f := openT(t, fx.path)
	type fn struct {
		name  string
		addr  uint64
		insns map[uint64]bool
		bad   bool
	}
	var fns []*fn
	var cur *fn
	sc := bufio.NewScanner(strings.NewReader(run(t, "objdump", "-d", "--no-show-raw-insn", fx.path)))
	for sc.Scan() {
		line := sc.Text()
		if m := objdumpFunc.FindStringSubmatch(line); m != nil {
			cur = &fn{name: m[2], addr: hexT(t, m[1]), insns: make(map[uint64]bool)}
			fns = append(fns, cur)
			continue
		}
		if m := objdumpInsn.FindStringSubmatch(line); m != nil && cur != nil {
			cur.insns[hexT(t, m[1])] = true
			if strings.Contains(m[2], "(bad)") {
				cur.bad = true
			}
		}
	}
	checked := 0
	for _, fn := range fns {
		if fn.bad || strings.Contains(fn.name, "@") {
			continue
		}
		off, err := f.Resolve(fn.name)
		if err != nil {
			continue // not an STT_FUNC, or ambiguous
		}
		s, err := f.lookup(fn.name)
		if err != nil || s.size == 0 {
			continue
		}
		for k := uint64(0); k < s.size; k++ {
			_, err := f.Analyze(off + k)
			start := fn.insns[fn.addr+k]
			if start && errors.Is(err, ErrNotBoundary) {
				t.Errorf("%s+%#x: objdump starts an instruction there, Analyze: %v", fn.name, k, err)
			}
			if !start && !errors.Is(err, ErrNotBoundary) {
				t.Errorf("%s+%#x: inside an instruction for objdump, Analyze: %v", fn.name, k, err)
			}
			checked++
		}
	}
	if checked < 50 {
		t.Fatalf("only %d offsets checked", checked)
	}
	t.Logf("%s: %d offsets agree with objdump", fx.name, checked)
}

// copyRO copies path into a private temp dir, read-only.
func copyRO(t testing.TB, path string) string {
	t.Helper()
	cp := testfix.Copy(t, path)
	if err := chmod(cp, 0o444); err != nil {
		t.Fatal(err)
	}
	return cp
}
