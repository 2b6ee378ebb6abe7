package objfile

import (
	"fmt"
	"sort"

	"github.com/uprobefs/uprobefs/core/install"
)

// Jump sites: the rules that need the file (install.AnalyzeJump has those
// that need only the bytes). The displaced range [off, off+Len) must stay
// inside its function; nothing may branch into its interior (off,
// off+Len) — neither the function itself (which must have no indirect
// jmp: a jump table may lead anywhere in it) nor any other code of the
// file, found by one scan of all the executable code per File (scan.go).

// maxJumpRead is how many bytes from the probe offset AnalyzeJump is given:
// enough for whole instructions covering 5 bytes (at most 4 + 15).
const maxJumpRead = 32

// JumpAt decides whether a jump site can be placed at file offset off
// (which Analyze accepted): AnalyzeJump on the bytes from off to the end of
// the containing function, plus the rules that need the file: the
// displaced range stays inside the containing function (symbol bounds;
// without a symbol, up to the next symbol or the end of the executable
// segment, or of the unwind entry or PLT entry that covers off); the
// function is decoded whole and refused if it has an indirect jmp (jump
// tables) or a direct branch into (off, off+Len); and the rest of the
// file's executable code is scanned once per File (cached, lazily, safe
// for concurrent use) for direct branches (jmp/jcc/call/loop/jrcxz rel)
// into (off, off+Len). In a Go file only function entries are accepted
// (elsewhere a goroutine may be parked by async preemption inside the
// range, where no thread's registers show it), and so in a file with C++
// exception tables (a landing pad is entered by the unwinder, not by a
// branch). Errors wrap install.ErrRefused with a short reason
// (install.RefusalReason), or ErrNotExecutable.
func (f *File) JumpAt(off uint64) (*install.JumpPlan, error) {
	if err := f.checkExec(off); err != nil {
		return nil, err
	}
	lo, hi, fn, err := f.funcBounds(off)
	if err != nil {
		return nil, err
	}
	if f.isGo && off != lo {
		// Go parks a preempted goroutine with its PC saved on its stack,
		// on no thread: the switch to the jump could not see it there.
		// Function entries (the stack-check prologue, or a nosplit
		// function) are never async preemption points.
		return nil, fmt.Errorf("inside a Go function (a preempted goroutine may be parked in the range): %w", install.ErrRefused)
	}
	if f.throws && off != lo {
		// The unwinder enters a landing pad at an address no branch
		// names; the exception tables are not read, so only function
		// entries (never a landing pad) are accepted.
		return nil, fmt.Errorf("inside a function of a file with C++ exception tables (a landing pad may be in the range): %w", install.ErrRefused)
	}
	n := min(hi-off, maxJumpRead)
	buf := make([]byte, n)
	got, err := f.readAt(buf, off)
	if err != nil {
		return nil, fmt.Errorf("read at %#x: %v: %w", off, err, install.ErrRefused)
	}
	j, err := install.AnalyzeJump(buf[:got])
	if err != nil {
		return nil, err
	}
	x := f.jumpIndex()
	if at, ok := x.indirectIn(lo, hi); ok {
		return nil, fmt.Errorf("indirect jmp in the function (%s, a jump table?): %w", f.at(fn, lo, at), install.ErrRefused)
	}
	if at, ok := x.badIn(lo, hi); ok {
		return nil, fmt.Errorf("function does not decode whole (%s): %w", f.at(fn, lo, at), install.ErrRefused)
	}
	if src, dst, ok := x.branchInto(off+1, off+uint64(j.Len)); ok {
		where := "another function"
		if src >= lo && src < hi {
			where = "this function"
		}
		return nil, fmt.Errorf("branch into the displaced range from %s (%s to +%d): %w",
			where, f.Symbolize(src), dst-off, install.ErrRefused)
	}
	return j, nil
}

// at names offset at in the function fn (from lo) for a reason.
func (f *File) at(fn string, lo, at uint64) string {
	if fn != "" {
		return fmt.Sprintf("%s+%#x", fn, at-lo)
	}
	return fmt.Sprintf("%#x", at)
}

// funcBounds returns the function that contains off, as file offsets
// [lo, hi), and its name ("" without a symbol): a function symbol with a
// size; else from the closest known instruction start to the next symbol,
// the end of the covering unwind or PLT entry, or the end of the segment.
func (f *File) funcBounds(off uint64) (lo, hi uint64, name string, err error) {
	if s := f.containing(off, false); s != nil && s.size > 0 {
		return s.off, s.off + s.size, s.name, nil
	}
	st, known := f.startBefore(off)
	if !known {
		return 0, 0, "", fmt.Errorf("no function symbol or unwind entry covers it: %w", install.ErrRefused)
	}
	seg, _ := f.segmentOf(off)
	hi = min(seg.off+seg.filesz, f.size)
	// The next symbol start after off.
	i := sort.Search(len(f.syms), func(i int) bool { return f.syms[i].off > off })
	if i < len(f.syms) {
		hi = min(hi, f.syms[i].off)
	}
	for i, r := range f.regions {
		if r.start > off {
			break
		}
		if f.regionEnd[i] <= off || off >= r.end || r.startFor(off) != st.off {
			continue
		}
		end := r.end
		if r.stride != 0 {
			end = min(end, st.off+r.stride)
		}
		hi = min(hi, end)
	}
	return st.off, hi, st.sym, nil
}

// FunctionStarts returns the distinct file offsets at which function
// symbols (those Resolve knows) start, sorted: the function entries.
func (f *File) FunctionStarts() []uint64 {
	var offs []uint64
	for i, s := range f.syms {
		if i == 0 || s.off != f.syms[i-1].off {
			offs = append(offs, s.off)
		}
	}
	return offs
}
