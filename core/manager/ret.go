package manager

import (
	"strconv"
	"strings"
	"syscall"

	"github.com/uprobefs/uprobefs/core/fetch"
	"github.com/uprobefs/uprobefs/core/probes"
)

// Return probes: "r:NAME LOCATION [FETCHARGS]", "r LOCATION", or
// "LOCATION%return" in any form (tracefs's grammar). The probe is at the
// function's first instruction; its hits are the function's returns (the
// world replaces the return address at the entry: core/proc's
// uretprobe.go). Each return event has the entry's fields, then
// " ret=0xCALLER dur=NS" (the address it returns to, the time since the
// entry) and the fetch arguments ($retval: rax). NAME/latency is the
// histogram of the durations (core/fetch.Hist). In Go programs, whose
// runtime copies and walks stacks (a replaced return address would crash
// them: golang/go#22008), the returns are probed instead (goret.go).

// returnSuffix marks a return probe's location, as in tracefs.
const returnSuffix = "%return"

// cutReturn cuts "%return" off loc.
func cutReturn(loc string) (string, bool) {
	return strings.CutSuffix(loc, returnSuffix)
}

// checkReturn refuses a return probe at off where the world could not
// replace a return address: not a function's first instruction, or a Go
// program.
func (b *batch) checkReturn(op Op, off uint64) error {
	if !b.elf.IsFunctionStart(off) {
		return errorf(syscall.EINVAL, "%s%s is %s, not the first instruction of a function: a return probe goes on a function's entry (where its return address is on the stack)", op.Location, returnSuffix, b.elf.Symbolize(off))
	}
	return nil
}

// retHandler is the return consumer's handler of p: the duration goes to
// the histogram, and the return to the ring while someone streams it.
func (p *Probe) retHandler(ring *EventRing) func(*probes.Uprobe, probes.Return) {
	args, off, hist := p.Args, p.Offset, p.hist
	comm := false
	for _, a := range args {
		comm = comm || strings.Contains(a.Body, "$comm")
	}
	return func(_ *probes.Uprobe, r probes.Return) {
		if d := r.Time - r.Entry; d >= 0 {
			hist.AddNS(uint64(d))
		}
		if !ring.Streaming() {
			return
		}
		var b []byte
		b = append(b, " ret=0x"...)
		b = strconv.AppendUint(b, r.Ret, 16)
		b = append(b, " dur="...)
		b = strconv.AppendInt(b, r.Time-r.Entry, 10)
		if len(args) > 0 {
			ctx := fetch.Context{Mem: readerMem{r.Mem}}
			if r.Regs != nil {
				ctx.Regs, ctx.Retval = r.Regs, r.Regs.Rax
			}
			ctx.FileOffset = func(o uint64) (uint64, bool) { return r.Vaddr - off + o, true }
			if comm {
				ctx.Comm = taskComm(r.Pid, r.Tid)
			}
			text := EscapeText(fetch.Format(args, ctx))
			if len(text) > maxArgsText {
				text = text[:maxArgsText] + "..."
			}
			b = append(b, text...)
		}
		ring.PushArgs(r.Hit, string(b))
	}
}

// Latency returns the histogram of a return probe's durations, as
// bpftrace's hist() prints it, or "" for an entry probe.
func (p *Probe) Latency() string {
	if p.hist == nil {
		return ""
	}
	return p.hist.String()
}
