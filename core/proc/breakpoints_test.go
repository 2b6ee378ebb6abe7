package proc

import (
	"errors"
	"syscall"
	"testing"

	"github.com/uprobefs/uprobefs/internal/procfs"
)

// TestCheckedWrite: the one checked write path refuses to write where the
// address maps the probed file at another offset than the breakpoint's,
// and where the memory holds another instruction with the same first byte
// (f_load, f_store and helper of testdata/work.c all start with 0x48). The
// old checks compared the file's identity and one byte only, and wrote.
func TestCheckedWrite(t *testing.T) {
	bin := workBin(t)
	e := newEnv(t, Options{})
	f := startFixture(t, bin, "10", "1", "p", "hold")
	pushProbe := e.register(bin, "f_push") // attaches the process
	load, loadPlan := resolvePlan(t, bin, "f_load")
	store, storePlan := resolvePlan(t, bin, "f_store")
	if loadPlan.Insn[0] != storePlan.Insn[0] || string(loadPlan.Insn) == string(storePlan.Insn) {
		t.Fatalf("fixture: f_load [% x] and f_store [% x] must share their first byte only", loadPlan.Insn, storePlan.Insn)
	}
	k := keyOf(t, bin)
	var errOff, errBytes error
	var storeVaddr uint64
	if err := e.w.t.do(func() {
		p := e.w.procs[f.Pid]
		ms, err := procfs.ReadMaps(f.Pid)
		if err != nil {
			errOff = err
			return
		}
		for _, m := range ms {
			if m.Dev == k.Dev && m.Ino == k.Ino && m.Exec() && store >= m.Off && store < m.Off+(m.End-m.Start) {
				storeVaddr = m.Start + (store - m.Off)
			}
		}
		p.mm.MmapSem.RLock()
		defer p.mm.MmapSem.RUnlock()
		// f_load's breakpoint aimed at f_store's address.
		errOff = p.writeBreakpointLocked(storeVaddr, bpSite{key: k, off: load, insn: loadPlan.Insn}, true)
		// The right offset, but f_load's instruction expected there.
		errBytes = p.writeBreakpointLocked(storeVaddr, bpSite{key: k, off: store, insn: loadPlan.Insn}, true)
	}); err != nil {
		t.Fatal(err)
	}
	if storeVaddr == 0 {
		t.Fatal("f_store not mapped")
	}
	if !errors.Is(errOff, syscall.ESRCH) {
		t.Errorf("write at another offset of the file: %v, want a mapping-gone (ESRCH) refusal", errOff)
	}
	if !errors.Is(errBytes, syscall.EINVAL) {
		t.Errorf("write over another instruction: %v, want EINVAL", errBytes)
	}
	// Only f_push's breakpoint is in: once it is removed, the text equals
	// the file (nothing was written at f_store).
	e.unregister(pushProbe)
	textEqualsFile(t, f.Pid, bin)
	holdAll(t, []*fixture{f})
	release(t, []*fixture{f})
}
