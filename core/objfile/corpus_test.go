package objfile

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/uprobefs/uprobefs/core/install"
)

// corpus analyses every function start of the ELF file at path and logs how
// many are refused, emulated and slotted (go test -v -run Fixtures/corpus).
// It fails on a panic, an unexpected error kind, an undecodable function
// start, a slot that cannot be built or an emulation that fails on a
// permissive memory.
func corpus(t *testing.T, name, path string) {
	f := openT(t, path)
	seen := make(map[uint64]bool)
	classes := make(map[string]int)
	reasons := make(map[string]int)
	var refused, emulated, slotted int
	for _, s := range f.syms {
		if seen[s.off] {
			continue
		}
		seen[s.off] = true
		p, err := f.Analyze(s.off)
		if err != nil {
			if !errors.Is(err, install.ErrRefused) {
				t.Errorf("%s: %s: %v", name, s.name, err)
			}
			if strings.Contains(err.Error(), "undecodable") && !strings.HasPrefix(s.name, "ref_") {
				t.Errorf("%s: undecodable function start: %v", name, err)
			}
			refused++
			r := err.Error()
			if i := strings.LastIndex(r, ": "); i >= 0 {
				r = r[:i]
			}
			if i := strings.Index(r, "): "); i >= 0 {
				r = r[i+3:]
			}
			reasons[r]++
			continue
		}
		classes[p.Class]++
		// Addresses as if the file were mapped at 0x555555554000.
		insnAddr := 0x555555554000 + s.off
		switch p.Kind {
		case install.Emulate:
			emulated++
			regs := install.Regs{Rip: insnAddr, Rsp: 0x7ffffffde000, Rax: insnAddr}
			if err := p.Emulate(&regs, anyMem{}); err != nil {
				t.Errorf("%s: %s: Emulate: %v", name, s.name, err)
			}
		case install.Slot:
			slotted++
			code, err := p.SlotCode(insnAddr, insnAddr+1<<30)
			if err != nil || len(code) > install.MaxSlotSize {
				t.Errorf("%s: %s: SlotCode: %d bytes, %v", name, s.name, len(code), err)
			}
		default:
			t.Errorf("%s: %s: plan kind %v", name, s.name, p.Kind)
		}
	}
	t.Logf("%s: %d function starts: refused %d, emulated %d, slotted %d", name, len(seen), refused, emulated, slotted)
	t.Logf("%s: classes: %s", name, summary(classes))
	if refused > 0 {
		t.Logf("%s: refusals: %s", name, summary(reasons))
	}
}

func summary(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || (m[keys[i]] == m[keys[j]] && keys[i] < keys[j]) })
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	return b.String()
}

// anyMem accepts every access: reads give zeros.
type anyMem struct{}

func (anyMem) ReadMemory(vaddr uint64, p []byte) error {
	clear(p)
	return nil
}
func (anyMem) WriteMemory(vaddr uint64, p []byte) error { return nil }

// TestCorpusBash runs the corpus over a private read-only copy of
// /usr/bin/bash (never the original: only a copy is opened).
func TestCorpusBash(t *testing.T) {
	const bash = "/usr/bin/bash"
	if _, err := os.Stat(bash); err != nil {
		t.Skipf("no %s: %v", bash, err)
	}
	cp := copyRO(t, bash)
	corpus(t, "bash", cp)
}
