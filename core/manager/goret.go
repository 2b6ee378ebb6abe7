package manager

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"syscall"

	"github.com/uprobefs/uprobefs/core/fetch"
	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// Return probes on return instructions: in Go programs, and in files with
// C++ exception tables, where an exception unwound through a function
// whose return address was replaced finds no unwind entry for it and ends
// the program (std::terminate: it does so under the kernel's uretprobes).
// The Go runtime copies goroutine stacks when
// they grow and walks them (GC, tracebacks, panics): a replaced return
// address crashes it (golang/go#22008). There, a return probe never touches
// a stack: it is a uprobe at the function's entry, which notes the time,
// and one at every return instruction of the function (objfile.Returns:
// c3, c2 iw, prefixed forms, decoded within the symbol), whose hits are
// the returns. An entry and a return are paired on the goroutine (its g,
// in r14 in Go's register ABI, at both), last in first out, so a
// recursion, a goroutine that moved to another thread, or a stack that was
// copied in between pair right. What this misses: a return by a tail call
// (a jmp out of the function: its callee's ret is elsewhere) and a frame
// left by a panic (its entry stays unpaired; at most maxGoPending are kept
// in all).

// maxGoPending bounds the entries waiting for their return, all
// goroutines together (8 bytes each); past it they are dropped.
const maxGoPending = 1 << 20

// goRet is one return instruction of a Go return probe.
type goRet struct {
	off  uint64
	plan *install.Plan
	c    *probes.Consumer
}

// goPairs are the pending entries of a Go return probe, by goroutine.
type goPairs struct {
	mu sync.Mutex
	m  map[uint64][]int64
	n  int // entries in m
}

func (g *goPairs) push(gid uint64, t int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil || g.n >= maxGoPending {
		g.m, g.n = map[uint64][]int64{}, 0
	}
	g.m[gid] = append(g.m[gid], t)
	g.n++
}

func (g *goPairs) pop(gid uint64) (int64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.m[gid]
	if len(s) == 0 {
		return 0, false
	}
	t := s[len(s)-1]
	g.n--
	if len(s) == 1 {
		delete(g.m, gid)
	} else {
		g.m[gid] = s[:len(s)-1]
	}
	return t, true
}

// stageGoReturn finds the return instructions of the Go function at off,
// and moves the entry probe past its stack check (a stack growth runs the
// function's first instruction again: objfile.GoBodyStart).
func (b *batch) stageGoReturn(p *Probe) error {
	p.goMode = b.elf.IsGo()
	body := p.Offset
	if p.goMode {
		var err error
		if body, err = b.elf.GoBodyStart(p.Offset); err != nil {
			return objfileError(err)
		}
	}
	if body != p.Offset {
		plan, err := b.elf.Analyze(body)
		if err != nil {
			return objfileError(err)
		}
		p.entryOff, p.plan = body, plan
	}
	offs, err := b.elf.ReturnsAt(p.Offset)
	if err != nil {
		return objfileError(err)
	}
	if len(offs) == 0 {
		return errorf(syscall.EINVAL, "%s: no return instruction in the function (it ends in a tail call or never returns): a return probe there would count nothing", p.Location)
	}
	for _, o := range offs {
		plan, err := b.elf.Analyze(o)
		if err != nil {
			return objfileError(err)
		}
		p.goRets = append(p.goRets, goRet{off: o, plan: plan})
	}
	return nil
}

// pairKey is what pairs an entry with its return: in Go the goroutine (its
// g is in r14 at both; its stack may move in between), else the thread
// and the stack slot of the return address (rsp at the entry and at the
// ret: a frame an exception unwinds leaves its entry unpaired).
func (p *Probe) pairKey(h probes.Hit) uint64 {
	if p.goMode {
		return h.Regs.R14
	}
	return uint64(h.Tid)<<48 ^ h.Regs.Rsp
}

// goEntryHandler notes the entry of a Go return probe's function.
func (p *Probe) goEntryHandler() func(*probes.Uprobe, probes.Hit) {
	return func(_ *probes.Uprobe, h probes.Hit) {
		if h.Regs != nil {
			p.pairs.push(p.pairKey(h), h.Time)
		}
	}
}

// goRetHandler is the consumer of one return instruction at off.
func (p *Probe) goRetHandler(ring *EventRing, off uint64) func(*probes.Uprobe, probes.Hit) {
	args, fnOff, hist := p.Args, p.Offset, p.hist
	return func(_ *probes.Uprobe, h probes.Hit) {
		p.retHits.Add(1)
		var entry int64
		paired := false
		if h.Regs != nil {
			entry, paired = p.pairs.pop(p.pairKey(h))
		}
		if paired && h.Time >= entry {
			hist.AddNS(uint64(h.Time - entry))
		}
		if !ring.Streaming() {
			return
		}
		fn := h.Vaddr - (off - fnOff)
		var ret uint64
		var w [8]byte
		if h.Mem != nil && h.Regs != nil {
			if n, _ := h.Mem.ReadAt(w[:], int64(h.Regs.Rsp)); n == 8 {
				ret = binary.LittleEndian.Uint64(w[:])
			}
		}
		b := []byte(" ret=0x" + strconv.FormatUint(ret, 16))
		if paired {
			b = append(b, " dur="...)
			b = strconv.AppendInt(b, h.Time-entry, 10)
		}
		if len(args) > 0 {
			ctx := fetch.Context{Regs: h.Regs, Mem: readerMem{h.Mem}}
			if h.Regs != nil {
				ctx.Retval = h.Regs.Rax
			}
			ctx.FileOffset = func(o uint64) (uint64, bool) { return fn - fnOff + o, true }
			text := EscapeText(fetch.Format(args, ctx))
			if len(text) > maxArgsText {
				text = text[:maxArgsText] + "..."
			}
			b = append(b, text...)
		}
		h.Vaddr = fn
		ring.PushArgs(h, string(b))
	}
}

// registerGoRets registers the return-instruction uprobes of p.
func (m *Manager) registerGoRets(in *rmap.Inode, p *Probe, ring *EventRing) error {
	for i := range p.goRets {
		r := &p.goRets[i]
		r.c = &probes.Consumer{Name: p.Name + " ret", Handler: p.goRetHandler(ring, r.off), WantRegs: true}
		if p.Owner != 0 {
			r.c.Filter = reachOf(p.Owner)
		}
		if err := m.eng.Register(in, r.off, r.plan.Insn, r.plan, r.c); err != nil {
			m.unregisterGoRets(in, p)
			return fmt.Errorf("return instruction at %#x: %w", r.off, err)
		}
	}
	return nil
}

// unregisterGoRets unregisters those of p's return-instruction uprobes
// that are registered.
func (m *Manager) unregisterGoRets(in *rmap.Inode, p *Probe) {
	for i := range p.goRets {
		r := &p.goRets[i]
		if r.c == nil {
			continue
		}
		if err := m.eng.Unregister(in, r.off, r.c); err != nil {
			m.log.Error("unregister a return instruction's probe", "path", p.Path, "name", p.Name, "offset", fmt.Sprintf("%#x", r.off), "err", err)
		}
		r.c = nil
	}
}

// returnMode is the status line of a return probe: how it works.
func (p *Probe) returnMode() string {
	switch {
	case !p.Return:
		return ""
	case len(p.goRets) > 0 && p.goMode:
		return fmt.Sprintf("return probe: a probe on each of the function's %d return instructions (a Go program: return addresses are never replaced)\n", len(p.goRets))
	case len(p.goRets) > 0:
		return fmt.Sprintf("return probe: a probe on each of the function's %d return instructions (a file with C++ exception tables: a replaced return address would stop an exception's unwinding)\n", len(p.goRets))
	}
	return "return probe: the return address is replaced at the entry (a trampoline, as the kernel's uretprobes)\n"
}

// probeOff is where p's entry uprobe is: p.Offset (the function), unless
// it was moved past a Go stack check (entryOff).
func (p *Probe) probeOff() uint64 {
	if p.entryOff != 0 {
		return p.entryOff
	}
	return p.Offset
}
