package proc

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/internal/procfs"
)

// placer moves the tracer thread. Tracer-owned.
type placer struct {
	mode  Placement
	cpu   int
	buf   []byte
	moves uint64
	n     uint64
	// idle: the tracer thread runs at SCHED_IDLE (PlaceFollow).
	idle bool
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
	c, err := procfs.ThreadCPU(th.statFile, pl.buf)
	if err != nil || c == pl.cpu || c < 0 {
		return
	}
	var set unix.CPUSet
	set.Set(c)
	if unix.SchedSetaffinity(0, &set) == nil {
		pl.cpu = c
		pl.moves++
		if !pl.idle {
			pl.idle = setIdlePolicy() == nil
		}
	}
}

// setIdlePolicy puts the calling thread (the tracer thread) at SCHED_IDLE,
// so that the tracee it resumes on its own CPU preempts it at once: the
// tracer finishes its round (back into waitid) while the tracee runs to
// its next trap, instead of the tracee waiting for the tracer to sleep or
// for the other CPU. Children forked by the thread (the doorbell) get the
// normal policy back (SCHED_FLAG_RESET_ON_FORK).
func setIdlePolicy() error {
	return unix.SchedSetAttr(0, &unix.SchedAttr{
		Size:   unix.SizeofSchedAttr,
		Policy: unix.SCHED_IDLE,
		Flags:  unix.SCHED_FLAG_RESET_ON_FORK,
	}, 0)
}
