package main

// The return-probe and fetch-argument figures (issue 13): the per-call
// cost of a return probe (entry and return) beside the kernel's uretprobe,
// and the per-hit cost of an entry probe with three register arguments and
// with one string argument (uprobefs with a reader streaming the events,
// as it fetches only then; the kernel with its event enabled).

import "fmt"

func phaseRetArgs(e *env, bin string) ([]row, error) {
	ours, oursNote := e.ours()
	sec := sectionOf("retargs")
	var rows []row
	for _, c := range []struct{ loc, name string }{
		{"emul_push%return", "per-call cost of a return probe (entry + return), `push %rbp` function"},
		{"emul_push %di %si %dx", "per-hit cost, entry probe with 3 register arguments"},
		{"emul_push s=+0(%si):string", "per-hit cost, entry probe with a string argument"},
	} {
		m, err := perHitLoc(e, bin, "emul_push", c.loc, hitCalls, e.tracers())
		if err != nil {
			return rows, err
		}
		r := row{Section: sec, Name: c.name, Unit: uNs, Ours: pick(m, ours, oursNote), Ref: pick(m, e.kernel, e.kernelNote)}
		r.Detail = fmt.Sprintf("%d calls a run, 1 thread; probe `%s`", hitCalls, c.loc)
		rows = append(rows, r)
	}
	return rows, nil
}
