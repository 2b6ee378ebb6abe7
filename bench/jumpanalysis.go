package main

// The target paragraphs of the jump-site figures (phases.go's analyse
// appends them): met or missed, by how much, and why from the perf
// profiles of this run (jumpprof.go).

import (
	"fmt"
	"strings"
)

func jumpAnalysis(rows []row) []string {
	find := func(prefix string) *row {
		for i := range rows {
			if strings.HasPrefix(rows[i].Name, prefix) {
				return &rows[i]
			}
		}
		return nil
	}
	p1, p2 := jumpFigures.prof1, jumpFigures.prof2
	costs := func(prof string) string {
		var s []string
		for _, x := range []struct{ insn, say string }{
			{"lock inc", "after the locked increment of the counter (its cost)"},
			{"popf", "after popf"},
			{"pushf", "after pushf"},
		} {
			if v := trampShare(prof, x.insn); v > 0 {
				s = append(s, fmt.Sprintf("%.0f %% %s", v, x.say))
			}
		}
		return strings.Join(s, ", ")
	}
	var a []string
	if r := find("per hit, jump site (`push %rbp`) vs the kernel's emulated"); r != nil {
		why := "A hit on a jump site is the jmp, the trampoline (lea below the red zone, pushf, lock incq of the site's counter in the shared memfd, popf, lea back), the relocated instructions and the jmp back: no exception, no stop. "
		if c := costs(p1); c != "" {
			why += "The profile of a 1-thread run (share of the workload's samples): " + c + ". "
		}
		why += "What would close it: no pushf/popf where the flags are dead at the site (the displaced instructions or their successor write them before any read), a plain increment of a per-thread counter instead of a locked one."
		a = append(a, targetPara("Per hit, jump site: ≤ 0.05× the kernel's emulated case", *r, p1, why))
	}
	if c := costs(p1); c != "" {
		a = append(a, "**Where a jump-site hit's time goes** — from a perf profile of the workload in this run (cpu-clock samples: the cost of a slow instruction shows mostly at the address after it): "+
			c+".\n\n```\n"+p1+"\n```")
	}
	if r := find("hits/s, 2 thread(s), jump site"); r != nil {
		title := "Hits/s at 2 threads, jump site: ≥ 10× the kernel"
		var b strings.Builder
		x, ok := r.ratio()
		switch {
		case !ok:
			fmt.Fprintf(&b, "**%s** — not measured: uprobefs: %s; kernel: %s.", title, r.cell(r.Ours), r.cell(r.Ref))
		case x >= 10:
			fmt.Fprintf(&b, "**%s** — met. uprobefs %s vs kernel %s (%.1f×).", title, fmtVal(r.Unit, r.Ours.med()), fmtVal(r.Unit, r.Ref.med()), x)
		default:
			fmt.Fprintf(&b, "**%s** — MISSED by %.2f× (%.1f× instead of 10×). uprobefs %s vs kernel %s.", title, 10/x, x, fmtVal(r.Unit, r.Ours.med()), fmtVal(r.Unit, r.Ref.med()))
			why := "Every thread increments the same counter (one per site) with a locked instruction, so at 2 threads on 2 CPUs its cache line moves between the CPUs on every hit; "
			if r1 := find("hits/s, 1 thread(s), jump site"); r1 != nil && r1.Ours.ok() && r.Ours.ok() {
				why += fmt.Sprintf("1 thread does %s, 2 threads %s in all. ", fmtVal(uPerSec, r1.Ours.med()), fmtVal(uPerSec, r.Ours.med()))
			}
			if c := costs(p2); c != "" {
				why += "The profile of a 2-thread run: " + c
				if c1 := costs(p1); c1 != "" {
					why += " (1 thread: " + c1 + ")"
				}
				why += ". "
			}
			if v := trampShare(p2, "add"); v > 0 {
				why += fmt.Sprintf("%.0f %% of the samples follow the relocated `addq $1,(%%rdi)`, the workload's own per-thread count: its threads' counters are 32 bytes apart (struct job), in one cache line, so the workload shares a line between CPUs too (in the unprobed and the kernel's runs as well). ", v)
			}
			why += "What would close it: a counter per CPU or per thread (slots picked by the thread's %fs base or by rdtscp's CPU number, summed by the daemon when it flushes), each on its own cache line."
			fmt.Fprintf(&b, "\n\nWhy, and what would close it: %s", why)
			if p2 != "" {
				fmt.Fprintf(&b, "\n\nProfile from this run:\n\n```\n%s\n```", p2)
			}
		}
		a = append(a, b.String())
	}
	if r := find("events/s delivered"); r != nil {
		why := "While its `events` file is open a probe stays a jump site: its trampolines append a record (TSC, fs base, site) to a ring of 65,536 records in the memfd shared with the daemon, whose drain goroutine (polling every 50 µs while records come) turns them into events: the process never stops. Where a reader falls behind, the ring's oldest records are lost and counted (the \"# lost\" lines). The reader's own cost is the daemon's event ring and FUSE reads of text lines (about 60 bytes an event)."
		title := "Events to a reader that keeps up: ≥ 1 M/s, none lost silently"
		var b strings.Builder
		if !r.Ours.ok() {
			fmt.Fprintf(&b, "**%s** — not measured: %s.", title, r.cell(r.Ours))
		} else {
			fmt.Fprintf(&b, "**%s** — MISSED by %.0f× (%s). None lost silently: in every run the events received + the \"# lost N events\" lines equal the calls (%d lost in all the runs, counted).", title, 1e6/r.Ours.med(), fmtVal(uPerSec, r.Ours.med()), jumpFigures.lost)
			if r.Ours.med() >= 1e6 {
				b.Reset()
				fmt.Fprintf(&b, "**%s** — met (%s).", title, fmtVal(uPerSec, r.Ours.med()))
			}
		}
		fmt.Fprintf(&b, "\n\nWhy, and what would close it: %s", why)
		a = append(a, b.String())
	}
	var reg []string
	for _, k := range jumpRegSizes {
		if r := find(fmt.Sprintf("register until every site is \"jump\", %d process", k)); r != nil && r.Ours.ok() && r.Ref.ok() {
			reg = append(reg, fmt.Sprintf("%d process(es): %s vs the kernel's %s (%.2f×)", k, fmtVal(uNs, r.Ours.med()), fmtVal(uNs, r.Ref.med()), r.Ours.med()/r.Ref.med()))
		}
	}
	if len(reg) > 0 {
		a = append(a, "**Registration including the switch to jump sites** — reported (no target): "+strings.Join(reg, "; ")+
			". The switch is the tracer's work after the breakpoints are in (core/proc/jumppatch.go): per process it stops every thread (PTRACE_INTERRUPT), maps a jump region the first time (memfd_create, ftruncate and two mmaps injected as system calls into the tracee, pidfd_getfd and mmap in the daemon), writes the trampoline, checks that no thread is inside the displaced range, and writes the jmp — on the one tracer thread, process after process; the kernel's figure is a plain uprobe's registration (it has no jump sites for user space).")
		p := jumpFigures.profReg
		if say := perfSay(p, "core/proc.(*World).switchJumps", "switchJumps", "core/proc.(*World).mapJumpRegion", "of which mapping jump regions (mapJumpRegion)", "core/proc.(*World).injectSyscall", "injected system calls (injectSyscall)", "core/proc.(*World).stopThread", "stopping threads (stopThread)", "core/proc.readMaps", "reading /proc/PID/maps (readMaps)", "__x64_sys_ptrace", "ptrace system calls", "pvm_irq_enable", "pvm_irq_enable (hypervisor round trips)"); say != "" {
			a[len(a)-1] += " The daemon's profile of one registration with 100 processes (share of its samples, callees included): " + say + "."
		}
		if p != "" {
			a[len(a)-1] += fmt.Sprintf("\n\nProfile from this run:\n\n```\n%s\n```", strings.TrimRight(p, "\n"))
		}
	}
	a = append(a, "**Older rows and jump sites.** `uprobefs mount` and the Manager API make a count-only probe a jump site by default, so the rows of \"Per-hit overhead\" and \"Hit throughput\" above measured through them are jump sites where the probed function allows one; with 10,000 calls a run the per-hit rows there cannot resolve nanoseconds (some come out negative, and then \"not measured\"), and the paragraphs above about them (the ptrace round trip, the tracer's breakdown) describe the trap path. The section \"Jump sites: per hit, throughput, events\" has the jump figures, and its `--trap` rows the trap path's.")
	return a
}
