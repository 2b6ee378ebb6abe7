package manager

import (
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/uprobefs/uprobefs/core/fetch"
	"github.com/uprobefs/uprobefs/core/probes"
)

// Fetch arguments. "p:NAME LOCATION FETCHARGS" registers a probe whose
// events carry, after the usual fields, " NAME=VALUE" per argument, as
// tracefs's trace output prints them (core/fetch: the grammar, the values,
// the faults). They are fetched on the hit path while the thread is
// stopped: its registers (one more system call per hit) and its memory as
// the thread sees it (a bad pointer reads as tracefs's (fault), never a
// fault of the program). They are fetched only while some reader streams
// the probe's events. At most maxArgsText bytes of arguments per event.

// maxArgsText bounds the arguments of one event (the ring holds thousands).
const maxArgsText = 4096

// hitHandler is the handler of p's consumer: it pushes the hit to ring,
// with p's arguments fetched and formatted.
func (p *Probe) hitHandler(ring *EventRing) func(*probes.Uprobe, probes.Hit) {
	if len(p.Args) == 0 {
		return func(_ *probes.Uprobe, h probes.Hit) { ring.Push(h) }
	}
	args, off := p.Args, p.Offset
	comm := false
	for _, a := range args {
		comm = comm || strings.Contains(a.Body, "$comm")
	}
	return func(_ *probes.Uprobe, h probes.Hit) {
		if !ring.Streaming() {
			ring.Push(h) // counted; nobody reads the values
			return
		}
		ctx := fetch.Context{Regs: h.Regs, Mem: readerMem{h.Mem}}
		ctx.FileOffset = func(o uint64) (uint64, bool) { return h.Vaddr - off + o, true }
		if comm {
			ctx.Comm = taskComm(h.Pid, h.Tid)
		}
		text := EscapeText(fetch.Format(args, ctx)) // a string may hold a newline
		if len(text) > maxArgsText {
			text = text[:maxArgsText] + "..."
		}
		ring.PushArgs(h, text)
	}
}

// readerMem is a hit's memory as fetch reads it.
type readerMem struct{ r io.ReaderAt }

func (m readerMem) ReadMemory(addr uint64, p []byte) (int, error) {
	if m.r == nil {
		return 0, io.ErrUnexpectedEOF
	}
	return m.r.ReadAt(p, int64(addr))
}

// taskComm is the command name of thread tid of pid.
func taskComm(pid, tid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}
