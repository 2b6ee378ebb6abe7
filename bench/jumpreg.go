package main

// Registration including the switch to jump sites (issue 12): the time from
// the write to `probes` until status shows every site "jump", with 1 and
// with 100 processes mapping the binary, beside the kernel's registration
// (write to uprobe_events + enable) in the same run.

import (
	"fmt"
	"time"
)

var jumpRegSizes = []int{1, 100}

func phaseJumpReg(e *env) ([]row, error) {
	sec := "Jump sites: registration including the switch (issue 12)"
	jf, bin, pending, err := jumpSetup(e, sec, "registration to jump sites", "jumpreg")
	if pending != nil || err != nil {
		return pending, err
	}
	var rows []row
	for _, k := range jumpRegSizes {
		var toJump, write, kern value
		if e.kernel == nil {
			kern.Note = e.kernelNote
		}
		if e.left() < 20*time.Second {
			toJump.Note, kern.Note = "skipped: time budget", "skipped: time budget"
		} else if err := jumpRegRuns(e, jf, bin, k, &toJump, &write, &kern); err != nil {
			return rows, err
		}
		r := row{Section: sec, Name: fmt.Sprintf("register until every site is \"jump\", %d process(es), FUSE `echo > probes`", k), Unit: uNs,
			Ours: toJump, Ref: kern}
		r.Detail = fmt.Sprintf("from the write to `probes` until `status` shows %d line(s) \"pid=P vaddr=0xV jump\" (status read every %v; the write itself returned after %s, median); kernel: write uprobe_events + enable; `workload fleet %d` processes sleeping in pause()",
			k, statusPoll, cellOr(write, uNs), k)
		rows = append(rows, r)
	}
	return rows, nil
}

// jumpRegRuns measures e.runs registrations of a probe on bin with k
// processes mapping it: ours until every site is a jump site, and the
// kernel's, interleaved.
func jumpRegRuns(e *env, jf *fuseTracer, bin string, k int, toJump, write, kern *value) error {
	fleet, err := startChild(bin, "fleet", fmt.Sprint(k))
	if err != nil {
		return err
	}
	defer fleet.kill()
	if err := fleet.expect("ready", 60*time.Second); err != nil {
		return err
	}
	for r := 0; r < e.runs && !stopping.Load(); r++ {
		if !toJump.gaveUp() {
			t0 := time.Now()
			d, err := e.fuse.register(bin, "jreg", "emul_push")
			if err == nil {
				_, err = waitMode(jf, bin, "jreg", "jump", k, 30*time.Second)
			}
			total := time.Since(t0)
			if _, uerr := e.fuse.unregister(bin, "jreg"); uerr != nil && err == nil {
				err = uerr
			}
			if err != nil {
				toJump.fail(err)
			} else {
				toJump.S = append(toJump.S, float64(total))
				write.S = append(write.S, float64(d))
			}
		}
		if e.kernel != nil && !kern.gaveUp() {
			d, err := e.kernel.register(bin, "jreg", "emul_push")
			if err == nil {
				_, err = e.kernel.unregister(bin, "jreg")
			}
			if err != nil {
				kern.fail(err)
			} else {
				kern.S = append(kern.S, float64(d))
			}
		}
	}
	if k == jumpRegSizes[len(jumpRegSizes)-1] && *flagProfile && !toJump.gaveUp() {
		jumpFigures.profReg = profileJumpReg(e, jf, bin, k)
	}
	return fleet.closeAndWait(30 * time.Second)
}

// profileJumpReg records a perf profile of the daemon over one
// registration with k processes, until every site is a jump site.
func profileJumpReg(e *env, jf *fuseTracer, bin string, k int) string {
	var d time.Duration
	rep, err := perfRecord(e, []int{jf.Pid()}, func() error {
		t0 := time.Now()
		if _, err := e.fuse.register(bin, "jregprof", "emul_push"); err != nil {
			return err
		}
		_, err := waitMode(jf, bin, "jregprof", "jump", k, 30*time.Second)
		d = time.Since(t0)
		return err
	})
	if _, uerr := e.fuse.unregister(bin, "jregprof"); uerr != nil {
		logf("profile jump registration: %v", uerr)
	}
	if err != nil || rep == "" {
		if err != nil {
			logf("profile jump registration: %v", err)
		}
		return ""
	}
	return fmt.Sprintf("perf record -g -p <uprobefs mount> over one registration with %d processes until every site is \"jump\" (%v under perf):\n         children  self  comm  symbol\n%s", k, d.Round(time.Millisecond), rep)
}

func cellOr(v value, u unit) string {
	if !v.ok() {
		return "—"
	}
	return fmtVal(u, v.med())
}
