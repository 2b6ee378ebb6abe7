package proc

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/procfs"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestRegisterManyReal: 1,004 probes registered in one RegisterMany on a
// file 3 running processes map (the writes of each VMA in one run,
// textbatch.go), and a fourth process started after (its MmapHook is one
// run too): every call of every process counts exactly, each process's
// text holds an int3 (or a jump site's jmp) at each probe, and after one UnregisterMany it equals
// the file again.
func TestRegisterManyReal(t *testing.T) {
	bin := testfix.Glob(t)
	e := newEnv(t, Options{})
	fs := startFixtures(t, 3, bin)
	in := e.watch(bin)
	locs := []string{"alpha_one", "alpha_two", "alpha_three", "beta_one"}
	for i := range 1000 {
		locs = append(locs, fmt.Sprintf("many_%d", i))
	}
	var regs []probes.Registration
	var unregs []probes.Unregistration
	cs := map[string]*probes.Consumer{}
	for _, loc := range locs {
		off, plan := resolvePlan(t, bin, loc)
		c := &probes.Consumer{Name: loc}
		cs[loc] = c
		regs = append(regs, probes.Registration{Off: off, Insn: plan.Insn, Arch: plan, C: c})
		unregs = append(unregs, probes.Unregistration{Off: off, C: c})
	}
	if err := e.eng.RegisterMany(in, regs); err != nil {
		t.Fatal(err)
	}
	late := startFixture(t, bin) // held at its exec, attached
	for deadline := time.Now().Add(10 * time.Second); !mapsIn(in, regs[0].Off, late.Pid); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) { // polled: the exec event is the tracer's
			t.Fatalf("pid %d not attached after 10 s", late.Pid)
		}
	}
	fs = append(fs, late)
	for _, f := range fs {
		in3 := 0
		for _, r := range regs {
			// An int3, or already a jump site's jmp (alpha_*).
			if b := textByte(t, f.Pid, in, r.Off); b == 0xCC || b == 0xE9 && r.Arch.Jump != nil {
				in3++
			}
		}
		if in3 != len(regs) {
			t.Errorf("pid %d: %d of %d probes in", f.Pid, in3, len(regs))
		}
	}
	const lines = 3
	for range lines {
		for _, f := range fs {
			f.Go()
			if l, err := f.readLine(30 * time.Second); err != nil || l != "ok\n" {
				t.Fatalf("pid %d: %q %v", f.Pid, l, err)
			}
		}
	}
	want := map[string]uint64{"alpha_one": 1, "alpha_two": 2, "alpha_three": 3, "beta_one": 4, "many_7": 5, "many_8": 0}
	for loc, n := range want {
		if got := cs[loc].Hits(); got != n*lines*uint64(len(fs)) {
			t.Errorf("%s: %d hits, want %d", loc, got, n*lines*uint64(len(fs)))
		}
	}
	if err := e.eng.UnregisterMany(in, unregs); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		textEqualsFile(t, f.Pid, bin)
	}
}

// textByte reads the byte of pid's text at file offset off of in.
func textByte(t *testing.T, pid int, in *rmap.Inode, off uint64) byte {
	t.Helper()
	for _, v := range in.AppendVMAs(nil, off) {
		if as, ok := v.MM.AS.(*addressSpace); ok && as.proc.pid == pid && v.Exec {
			vaddr, _ := v.VaddrOf(off)
			b := make([]byte, 1)
			if err := as.pread(vaddr, b); err != nil {
				t.Fatal(err)
			}
			return b[0]
		}
	}
	t.Fatalf("pid %d maps no text at %#x", pid, off)
	return 0
}

// mapsIn reports whether the engine has an executable VMA of pid on in
// over the file offset off.
func mapsIn(in *rmap.Inode, off uint64, pid int) bool {
	for _, v := range in.AppendVMAs(nil, off) {
		if as, ok := v.MM.AS.(*addressSpace); ok && as.proc.pid == pid && v.Exec {
			return true
		}
	}
	return false
}

// TestTextBatches: a run's copy serves the reads it covers (and only
// those), follows the writes that overlap it, and is gone after the run.
func TestTextBatches(t *testing.T) {
	var tb textBatches
	b := &textBatch{start: 0x1000}
	b.m, b.mOK = procfs.Mapping{Start: 0x1000, End: 0x2000}, true
	tb.add(b, func() []byte { return []byte{1, 2, 3, 4, 5, 6, 7, 8} })
	got := make([]byte, 3)
	if !tb.read(0x1002, got) || string(got) != "\x03\x04\x05" {
		t.Fatalf("read: %v", got)
	}
	if tb.read(0x1006, got) || tb.read(0xfff, got[:1]) {
		t.Fatal("a read past the copy was served")
	}
	tb.wrote(0x0ffe, []byte{9, 9, 0xCC}) // overlaps the first byte
	tb.wrote(0x1007, []byte{0xCC, 9})    // overlaps the last
	tb.read(0x1000, got[:1])
	one := make([]byte, 1)
	tb.read(0x1007, one)
	if got[0] != 0xCC || one[0] != 0xCC {
		t.Fatalf("after the writes: %#x %#x", got[0], one[0])
	}
	if m, ok := tb.mapping(0x1fff); !ok || m.Start != 0x1000 {
		t.Fatal("the run's mapping not found")
	}
	if _, ok := tb.mapping(0x2000); ok {
		t.Fatal("a mapping past the run's")
	}
	tb.remove(b, nil)
	if tb.read(0x1000, got[:1]) {
		t.Fatal("read after the run ended")
	}
	if _, ok := tb.mapping(0x1000); ok {
		t.Fatal("mapping after the run ended")
	}
}

// fakeText is a rawMem over a byte slice at base, counting the calls.
type fakeText struct {
	base          uint64
	b             []byte
	reads, writes int
}

func (f *fakeText) pread(vaddr uint64, p []byte) error {
	f.reads++
	copy(p, f.b[vaddr-f.base:])
	return nil
}

func (f *fakeText) pwrite(vaddr uint64, p []byte) error {
	f.writes++
	copy(f.b[vaddr-f.base:], p)
	return nil
}

// TestTextBatchWriteBack: a run's deferred int3s reach the memory when the
// run ends, one check and one write a page; a write made during the run
// (a jmp, a restored byte) is kept, and supersedes a deferred int3 at its
// address; a page that changed under the run (the process wrote its text)
// is not written back but handed back byte by byte.
func TestTextBatchWriteBack(t *testing.T) {
	const base = 0x10000
	mem := &fakeText{base: base, b: make([]byte, 3*4096)}
	for i := range mem.b {
		mem.b[i] = byte(i % 251)
	}
	orig := append([]byte(nil), mem.b...)
	var tb textBatches
	b := &textBatch{start: base}
	tb.add(b, func() []byte { return append([]byte(nil), mem.b...) })
	for _, va := range []uint64{base + 0x10, base + 0x20, base + 0x1100, base + 0x1200, base + 0x2010, base + 0x2030} {
		if !tb.deferByte(va, 0xCC) {
			t.Fatalf("%#x not deferred", va)
		}
	}
	if tb.deferByte(base+3*4096, 0xCC) {
		t.Fatal("a byte past the run deferred")
	}
	if mem.writes != 0 || !bytes.Equal(mem.b, orig) {
		t.Fatal("a deferred byte was written at once")
	}
	one := make([]byte, 1)
	if tb.read(base+0x20, one); one[0] != 0xCC {
		t.Fatalf("the copy reads %#x at a deferred int3", one[0])
	}
	raw := mem.pwrite
	if !tb.writeThrough(base+0x30, []byte{0x90}, raw) || !tb.writeThrough(base+0x1200, []byte{0xE9, 1, 2, 3, 4}, raw) {
		t.Fatal("writeThrough failed")
	}
	mem.b[0x2020] ^= 0xFF // the process writes its text between two int3s of the third page
	writes := mem.writes
	failed := tb.remove(b, mem)
	if n := mem.writes - writes; n != 2 {
		t.Errorf("%d writes back for two unchanged pages, want 2", n)
	}
	want := append([]byte(nil), orig...)
	want[0x10], want[0x20], want[0x1100], want[0x30] = 0xCC, 0xCC, 0xCC, 0x90
	copy(want[0x1200:], []byte{0xE9, 1, 2, 3, 4})
	want[0x2020] ^= 0xFF
	if !bytes.Equal(mem.b, want) {
		for i := range want {
			if mem.b[i] != want[i] {
				t.Errorf("at +%#x: %#x, want %#x", i, mem.b[i], want[i])
			}
		}
	}
	if len(failed) != 2 || failed[0].vaddr != base+0x2010 || failed[1].vaddr != base+0x2030 ||
		failed[0].b != 0xCC || failed[0].old != orig[0x2010] || failed[1].old != orig[0x2030] {
		t.Errorf("handed back %+v, want the int3s at +0x2010 and +0x2030", failed)
	}
}
