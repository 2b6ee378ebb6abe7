package main

// The daemon-death figures (issue 14 item 7): a separate `uprobefs mount`
// with a probe that some processes hit at full speed and others hold idle
// is SIGKILLed; its guardian restores every breakpoint and unmounts the
// dead mount. Figures: the processes alive afterwards (idle ones must all
// be, and then run the probed function to the end), the time from the kill
// to the dead mount gone, and the guardian's own restore time.

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

const deathBusy, deathIdle = 3, 3

var guardianLine = regexp.MustCompile(`restored (\d+) breakpoints in (\d+) processes \((\d+) skipped\) in ([0-9.]+)(µs|ms|s)`)

func phaseDeath(e *env) ([]row, error) {
	sec := sectionOf("death")
	g, ok := e.fuse.(*guarded)
	if !ok {
		note := e.fuseNote
		if note == "" {
			note = "no uprobefs mount"
		}
		return []row{{Section: sec, Name: "daemon SIGKILL", Ours: value{Note: note}, Ref: value{Note: "n/a"}}}, nil
	}
	bin := g.t.(*fuseTracer).bin
	var idleAlive, busyAlive, unmounted, restore value
	for run := 0; run < max(e.runs, 3); run++ {
		r, err := deathRun(e, bin, run)
		if err != nil {
			for _, v := range []*value{&idleAlive, &busyAlive, &unmounted, &restore} {
				v.fail(err)
			}
			if idleAlive.gaveUp() {
				break
			}
			continue
		}
		idleAlive.S = append(idleAlive.S, float64(r.idle))
		busyAlive.S = append(busyAlive.S, float64(r.busy))
		unmounted.S = append(unmounted.S, float64(r.unmounted.Nanoseconds()))
		restore.S = append(restore.S, float64(r.restore.Nanoseconds()))
	}
	na := value{Note: "n/a (the kernel's uprobes die with the kernel)"}
	return []row{
		{Section: sec, Name: fmt.Sprintf("idle processes alive after the daemon's SIGKILL (of %d)", deathIdle), Unit: uCount, Higher: true, Ours: idleAlive, Ref: na, Target: fmt.Sprintf("= %d", deathIdle)},
		{Section: sec, Name: fmt.Sprintf("processes hitting the probe at full speed alive after it (of %d)", deathBusy), Unit: uCount, Higher: true, Ours: busyAlive, Ref: na},
		{Section: sec, Name: "SIGKILL → dead mount unmounted (guardian)", Unit: uNs, Ours: unmounted, Ref: na},
		{Section: sec, Name: "guardian: every breakpoint restored, after it learned of the death", Unit: uNs, Ours: restore, Ref: na},
	}, nil
}

type deathResult struct {
	idle, busy         int
	unmounted, restore time.Duration
}

func deathRun(e *env, bin string, run int) (deathResult, error) {
	var r deathResult
	mnt := filepath.Join(e.dir, fmt.Sprintf("mnt-death-%d", run))
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return r, err
	}
	d, err := startChild(bin, "mount", mnt)
	if err != nil {
		return r, err
	}
	defer d.kill()
	defer func() {
		if isMounted(mnt) {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	}()
	ft := &fuseTracer{bin: bin, mnt: mnt, daemon: d, forget: func() {}}
	for deadline := time.Now().Add(15 * time.Second); !isMounted(mnt); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return r, fmt.Errorf("death: mount did not appear: %s", tail(d.Stderr(), 300))
		}
	}
	w, err := e.copyBin(fmt.Sprintf("death-%d", run))
	if err != nil {
		return r, err
	}
	// k hitters of calls calls each, ready for "go".
	var all []*child
	defer func() {
		for _, c := range all {
			c.kill()
		}
	}()
	hitters := func(k int, calls string) ([]*child, error) {
		var cs []*child
		for range k {
			c, err := startChild(w, "hit", "emul_push", calls, "1")
			if err != nil {
				return nil, err
			}
			all = append(all, c)
			cs = append(cs, c)
		}
		return cs, nil
	}
	busy, err := hitters(deathBusy, "2000000000")
	if err != nil {
		return r, err
	}
	idle, err := hitters(deathIdle, "1000")
	if err != nil {
		return r, err
	}
	for _, c := range all {
		if err := c.expect("ready", 30*time.Second); err != nil {
			return r, err
		}
	}
	if _, err := ft.register(w, "p", "emul_push"); err != nil {
		return r, err
	}
	for _, c := range busy {
		c.send("go\n")
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if h, err := ft.hits(w, "p"); err == nil && h > 1000 {
			break
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("death: the busy processes made no hits")
		}
	}
	t0 := time.Now()
	syscall.Kill(d.Pid(), syscall.SIGKILL)
	for isMounted(mnt) {
		if time.Since(t0) > 10*time.Second {
			return r, fmt.Errorf("death: dead mount still there 10s after the kill")
		}
		time.Sleep(500 * time.Microsecond)
	}
	r.unmounted = time.Since(t0)
	if !d.exited(10 * time.Second) { // with the guardian, which shares its stderr
		return r, fmt.Errorf("death: guardian still running")
	}
	m := guardianLine.FindStringSubmatch(d.Stderr())
	if m == nil {
		return r, fmt.Errorf("death: no guardian report: %s", tail(d.Stderr(), 300))
	}
	x, _ := strconv.ParseFloat(m[4], 64)
	r.restore = time.Duration(x * map[string]float64{"µs": 1e3, "ms": 1e6, "s": 1e9}[m[5]])
	for _, c := range idle {
		c.send("go\n")
		if l, err := c.line(30 * time.Second); err == nil && len(l) > 3 && l[:3] == "ns=" {
			r.idle++
		}
	}
	time.Sleep(100 * time.Millisecond) // a busy process left with an int3 dies at once
	for _, c := range busy {
		select {
		case <-c.done:
		default:
			r.busy++
		}
	}
	return r, nil
}
