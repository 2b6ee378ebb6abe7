package proc

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// placer moves the tracer thread. Tracer-owned.
type placer struct {
	mode  Placement
	cpu   int
	buf   []byte
	moves uint64
	n     uint64
}

// followEvery is how often (in hits) PlaceFollow reads the tracee's CPU:
// reading /proc/PID/task/TID/stat costs several µs here.
const followEvery = 16

func (pl *placer) init(m Placement) {
	pl.mode = m
	pl.cpu = -1
	pl.buf = make([]byte, 1024)
}

// follow moves the tracer thread to the CPU th last ran on.
func (pl *placer) follow(th *thread) {
	pl.n++
	if pl.n%followEvery != 1 {
		return
	}
	if th.statFile == nil {
		f, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/stat", th.tgid, th.tid))
		if err != nil {
			return
		}
		th.statFile = f
	}
	c, err := threadCPU(th.statFile, pl.buf)
	if err != nil || c == pl.cpu || c < 0 {
		return
	}
	var set unix.CPUSet
	set.Set(c)
	if unix.SchedSetaffinity(0, &set) == nil {
		pl.cpu = c
		pl.moves++
	}
}
