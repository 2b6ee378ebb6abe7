package proc

import (
	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/objfile"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Following the program's changes of SIGTRAP's disposition (sigtrap.go
// keeps it; this file and syscalls.go learn it).
//
// A program sets a handler with sigaction or signal (glibc: every such call
// goes through __libc_sigaction; Go: runtime.rt_sigaction), usually after
// we attached (at an exec, before main). Every traced process gets an
// internal breakpoint (like the loader's r_brk, not an engine uprobe) on
// those functions in the files it maps that have them. A hit there traces
// the thread's next system call (PTRACE_SYSCALL, this thread only): at the
// rt_sigaction(SIGTRAP, act, ...) entry the new struct sigaction is read
// from act (kernel layout: glibc converts before the call), and kept when
// the call returns 0. Then the thread runs on untraced-for-syscalls. A
// program calling rt_sigaction by a raw syscall of its own is not followed
// (README, known limits).

// sigHookSymbols are the functions hooked, in order of preference per file.
var sigHookSymbols = []string{"__libc_sigaction", "sigaction", "runtime.rt_sigaction"}

// sigHookFile is what we know of one mapped file: where its sigaction
// function is (off) and its step-over plan; nil plan: none.
type sigHookFile struct {
	off  uint64
	plan *install.Plan
}

// sigHook is an internal breakpoint on a sigaction function in a process.
type sigHook struct {
	plan *install.Plan
	site bpSite
}

// placeSigHooks puts the internal breakpoints on the sigaction functions of
// the files p maps (ms is its maps) that have none yet. Files the engine
// probes are skipped: its breakpoints and ours must not share bytes.
// Preconditions: on the tracer thread.
func (w *World) placeSigHooks(p *process, ms []procfs.Mapping) {
	if p.detaching || p.gone {
		return
	}
	for i := range ms {
		m := &ms[i]
		if m.Ino == 0 || !m.Exec() {
			continue
		}
		f, k := internalFile(w, p, m, w.sigFiles, loadSigHookFile)
		if f == nil {
			continue
		}
		va, ok := m.Vaddr(f.off)
		if !ok || p.sigHooks[va] != nil {
			continue
		}
		site := bpSite{key: k, off: f.off, insn: f.plan.Insn}
		if !w.insertInternal(p, va, site, "sigaction hook") {
			continue
		}
		if p.sigHooks == nil {
			p.sigHooks = map[uint64]*sigHook{}
		}
		p.sigHooks[va] = &sigHook{plan: f.plan, site: site}
	}
}

// loadSigHookFile finds the sigaction function of the file at path.
func loadSigHookFile(path string) *sigHookFile {
	f, err := objfile.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	for _, name := range sigHookSymbols {
		off, err := f.Resolve(name)
		if err != nil {
			continue
		}
		plan, err := f.Analyze(off)
		if err != nil {
			continue
		}
		return &sigHookFile{off: off, plan: plan}
	}
	return nil
}

// removeSigHooks restores the bytes under p's sigaction hooks.
// Preconditions: on the tracer thread.
func (w *World) removeSigHooks(p *process) {
	for va, h := range p.sigHooks {
		w.removeInternal(p, va, h.site, "sigaction hook")
	}
	p.sigHooks = nil
}

// forgetSigHooks forgets the hooks of p in [start, end) (unmapped: nothing
// is written).
func (p *process) forgetSigHooks(start, end uint64) {
	for va := range p.sigHooks {
		if va >= start && va < end {
			delete(p.sigHooks, va)
		}
	}
}

// sigHookHit handles th's trap on a sigaction hook: step over, and follow
// the thread's next system calls (syscalls.go) to learn what it sets.
// Preconditions: on the tracer thread; th is stopped at the trap.
func (w *World) sigHookHit(th *thread, addr uint64, h *sigHook) {
	u := &probes.Uprobe{Insn: h.plan.Insn, Arch: h.plan}
	if !w.stepOver(th, u, addr) {
		return
	}
	th.follow |= followSigaction
	th.sigLeft = 4
	w.resume(th, 0)
}

// setTrapDisp records the struct sigaction act as SIGTRAP's disposition of
// the thread group tgid.
func (p *process) setTrapDisp(tgid int, act *[32]byte) {
	d := &sigTrap{act: *act}
	switch h := leUint64(act[:8]); h {
	case 0: // SIG_DFL
		d.kind = trapDefault
	case 1: // SIG_IGN
		d.kind = trapIgnored
	default:
		d.kind = trapCaught
	}
	if p.sigtrap == nil {
		p.sigtrap = map[int]*sigTrap{}
	}
	p.sigtrap[tgid] = d
}

func leUint64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}
