package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/uprobefs/uprobefs/core/objfile"
)

// phaseJump is the jump-site eligibility table (issue 12): over every
// function entry of private copies of bash, perl, libpython3.11 and a Go
// binary (this one), the share that gets a jump site (objfile's
// Analyze: Plan.Jump) and the reasons of the rest, counted; and the cost
// of the whole-file branch scan that JumpAt needs, per fresh File.
func phaseJump(e *env) ([]row, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	bins := []struct{ name, path string }{
		{"bash", "/usr/bin/bash"},
		{"perl", "/usr/bin/perl"},
		{"libpython3.11", "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0"},
		{"Go (ufsbench)", self},
	}
	var rows []row
	for _, b := range bins {
		sec := sectionOf("jump")
		data, err := os.ReadFile(b.path)
		if err != nil {
			rows = append(rows, row{Section: sec, Name: b.name, Ours: value{Note: "unavailable: " + err.Error()}, Ref: value{Note: "—"}})
			continue
		}
		p := filepath.Join(e.dir, "jump-"+filepath.Base(b.path))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return rows, err
		}
		share, scan, err := eligibility(p, b.name, e.runs)
		if err != nil {
			return rows, err
		}
		rows = append(rows, share, scan)
		os.Remove(p)
	}
	return rows, nil
}

// eligibility analyses every function entry of the file at path.
func eligibility(path, name string, runs int) (share, scan row, err error) {
	sec := sectionOf("jump")
	scan = row{Section: sec, Name: name + ": whole-file branch scan (first JumpAt of a File)", Unit: uNs, Ref: value{Note: "—"}}
	var insns, branches, indirect int
	for i := 0; i < max(3, min(runs, 5)); i++ {
		f, err := objfile.Open(path)
		if err != nil {
			return share, scan, err
		}
		var took time.Duration
		insns, branches, indirect, took = f.ScanStats()
		scan.Ours.S = append(scan.Ours.S, float64(took.Nanoseconds()))
		f.Close()
	}
	f, err := objfile.Open(path)
	if err != nil {
		return share, scan, err
	}
	defer f.Close()
	f.ScanStats()
	reasons := map[string]int{}
	var total, jump, trapOnly int
	t0 := time.Now()
	for _, off := range f.FunctionStarts() {
		p, err := f.Analyze(off)
		if err != nil {
			trapOnly++ // not probeable at all: not a function entry the table counts
			continue
		}
		total++
		if p.Jump != nil {
			jump++
			continue
		}
		r := p.NoJump
		if i := strings.Index(r, " ("); i >= 0 {
			r = r[:i]
		}
		reasons[r]++
	}
	per := time.Since(t0) / time.Duration(max(1, total+trapOnly))
	scan.Detail = fmt.Sprintf("%d instructions decoded, %d direct branches, %d indirect jmps; after it, Analyze (with JumpAt) takes %v per function entry",
		insns, branches, indirect, per.Round(100*time.Nanosecond))
	share = row{Section: sec, Name: name + ": function entries with a jump site", Unit: uShare,
		Ref: value{Note: "—"}, Target: "≥ 90 %", MinValue: 90}
	if total == 0 {
		share.Ours.Note = "no function symbols"
		return share, scan, nil
	}
	share.Ours.S = []float64{100 * float64(jump) / float64(total)}
	type kv struct {
		k string
		n int
	}
	var rs []kv
	for k, n := range reasons {
		rs = append(rs, kv{k, n})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].n > rs[j].n || rs[i].n == rs[j].n && rs[i].k < rs[j].k })
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%d %s", r.n, r.k))
	}
	share.Detail = fmt.Sprintf("%d of %d function entries (distinct symbol offsets that Analyze accepts", jump, total)
	if trapOnly > 0 {
		share.Detail += fmt.Sprintf("; %d more that it refuses are not counted", trapOnly)
	}
	share.Detail += ") get a jump site"
	if len(parts) > 0 {
		share.Detail += "; the trap path for the rest: " + strings.Join(parts, ", ")
	}
	return share, scan, nil
}
