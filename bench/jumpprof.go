package main

// A perf profile of the workload while it hits a jump site: where the
// nanoseconds of a hit go, instruction by instruction of the trampoline
// (perf sees it as the memfd mapping "memfd:uprobefs-jump (deleted)").

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/arch/x86/x86asm"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/core/objfile"
)

var perfLineRE = regexp.MustCompile(`^\s*([0-9.]+)%\s+(.+?)\s+\[([.k])\]\s+(\S+)`)

// jumpProfile runs `workload hit fn n threads` with fn probed by t (a
// jump site) under `perf record -p` and summarises `perf report --sort
// dso,sym`: the share of the samples in the trampoline, by instruction,
// in the workload and in the kernel. "" if perf is missing or fails.
func jumpProfile(e *env, t tracer, bin, fn string, n, threads int) string {
	perfBin, err := exec.LookPath("perf")
	if err != nil {
		return ""
	}
	c, err := startChild(bin, "hit", fn, fmt.Sprint(n), fmt.Sprint(threads))
	if err != nil {
		return ""
	}
	defer c.kill()
	if c.expect("ready", 10*time.Second) != nil {
		return ""
	}
	if _, err := t.register(bin, "jprof", fn); err != nil {
		logf("jump profile: %v", err)
		return ""
	}
	defer func() {
		if _, err := t.unregister(bin, "jprof"); err != nil {
			logf("jump profile: %v", err)
		}
	}()
	data := filepath.Join(e.dir, "perf-jump.data")
	defer os.Remove(data)
	var res string
	started, _ := recordPerf(perfBin, []string{"-o", data, "-p", fmt.Sprint(c.Pid())}, func() error {
		if err := c.send("go"); err == nil {
			var lerr error
			if res, lerr = c.line(time.Minute); lerr != nil {
				logf("jump profile: %v", lerr)
			}
		}
		return nil
	})
	if !started {
		return ""
	}
	if res == "" {
		return ""
	}
	out, err := exec.Command(perfBin, "report", "-i", data, "--stdio", "--sort", "dso,sym", "--percent-limit", "0.5").Output()
	if err != nil {
		return ""
	}
	m, _ := kv(res)
	head := fmt.Sprintf("perf record -p <workload> (cpu-clock samples) over `workload hit %s %d %d` on a jump site: %s", fn, n, threads,
		fmt.Sprintf("%.1f ns of wall time per hit in that run", float64(m["ns"])/float64(max(1, m["calls"]))))
	return head + "\n" + summarisePerf(string(out), trampolineInsns(bin, fn))
}

// trampolineInsns decodes the trampoline uprobefs builds for fn's jump
// site (install.JumpPlan.Trampoline, at plausible addresses): offset →
// the instruction there, in GNU syntax.
func trampolineInsns(bin, fn string) map[int]string {
	f, err := objfile.Open(bin)
	if err != nil {
		return nil
	}
	defer f.Close()
	off, err := f.Resolve(fn)
	if err != nil {
		return nil
	}
	p, err := f.Analyze(off)
	if err != nil || p.Jump == nil {
		return nil
	}
	site := 0x555555554000 + off
	at := site + 0x10000000
	code, _, err := p.Jump.Trampoline(site, at, at+0x10000)
	if err != nil {
		return nil
	}
	insns := map[int]string{}
	for i := 0; i < len(code); {
		in, err := x86asm.Decode(code[i:], 64)
		if err != nil {
			break
		}
		insns[i] = x86asm.GNUSyntax(in, at+uint64(i), nil)
		i += in.Len
	}
	return insns
}

// summarisePerf turns `perf report --sort dso,sym` into a few lines: the
// trampoline's samples by the instruction at the sampled address (and the
// one before it: with cpu-clock samples, a slow instruction's cost shows
// mostly at the address after it), the workload's own code, the kernel.
func summarisePerf(report string, insns map[int]string) string {
	var offs []int
	for o := range insns {
		offs = append(offs, o)
	}
	sort.Ints(offs)
	before := func(o int) string {
		i := sort.SearchInts(offs, o)
		if i > 0 && i <= len(offs) {
			return insns[offs[i-1]]
		}
		return "?"
	}
	type line struct {
		pct  float64
		what string
	}
	var tramp, rest []line
	var trampAll, kernelAll float64
	for _, l := range strings.Split(report, "\n") {
		m := perfLineRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		pct, _ := strconv.ParseFloat(m[1], 64)
		dso, kind, sym := m[2], m[3], m[4]
		switch {
		case strings.Contains(dso, "uprobefs-jump"):
			trampAll += pct
			a, err := strconv.ParseUint(strings.TrimPrefix(sym, "0x"), 16, 64)
			if err != nil {
				continue
			}
			o := int(a % install.MaxTrampSize)
			what := fmt.Sprintf("trampoline +%#02x", o)
			if in, ok := insns[o]; ok {
				what += fmt.Sprintf(" at `%s`, after `%s`", in, before(o))
			}
			tramp = append(tramp, line{pct, what})
		case kind == "k":
			kernelAll += pct
		default:
			rest = append(rest, line{pct, dso + " " + sym})
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%5.1f %%  in the trampoline (memfd:uprobefs-jump), by sampled address:\n", trampAll)
	for _, t := range tramp {
		fmt.Fprintf(&b, "  %5.1f %%  %s\n", t.pct, t.what)
	}
	for _, r := range rest {
		fmt.Fprintf(&b, "%5.1f %%  %s\n", r.pct, r.what)
	}
	fmt.Fprintf(&b, "%5.1f %%  in the kernel (timer interrupts, scheduling)", kernelAll)
	return b.String()
}

// trampShare returns the share of the profile's samples at the trampoline
// instruction that follows the first one whose text starts with prefix
// (where its cost shows), 0 if none.
func trampShare(prof, prefix string) float64 {
	for _, l := range strings.Split(prof, "\n") {
		if i := strings.Index(l, ", after `"+prefix); i >= 0 {
			var x float64
			fmt.Sscanf(strings.TrimSpace(l), "%g", &x)
			return x
		}
	}
	return 0
}
