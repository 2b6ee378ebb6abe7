package objfile

import (
	"fmt"

	"github.com/uprobefs/uprobefs/core/install"
)

// Analyze reads the instruction at file offset off from the file, checks that
// it can be probed and returns its step-over plan. The code is decoded from
// the closest known instruction start at or before off (a function symbol,
// a PLT entry, an .eh_frame unwind entry: starts.go), and an offset inside
// an instruction, or where no known start covers it, is refused. Errors
// wrap ErrNotExecutable (off outside the executable segments or past the
// end of the file), ErrNotBoundary, or ErrRefused, each with the reason
// and the location as Symbolize names it. The plan carries the jump-site
// decision: p.Jump from JumpAt, or p.NoJump with its reason.
func (f *File) Analyze(off uint64) (*install.Plan, error) {
	if err := f.checkExec(off); err != nil {
		return nil, err
	}
	seg, _ := f.segmentOf(off)
	end := seg.off + seg.filesz // the code ends here
	if end > f.size {
		end = f.size
	}
	where := f.Symbolize(off)
	st, known := f.startBefore(off)
	if !known {
		return nil, fmt.Errorf("%s (offset %#x): no function symbol, PLT entry or unwind entry (.eh_frame) covers it, "+
			"so where its instructions start is unknown; probe a function or an offset inside one: %w", where, off, ErrNotBoundary)
	}
	if st.off < off {
		if err := f.checkBoundary(st, off, end); err != nil {
			return nil, fmt.Errorf("%s (offset %#x): %w", where, off, err)
		}
	}
	n := uint64(install.MaxInsnLen)
	if end-off < n {
		n = end - off
	}
	buf := make([]byte, n)
	got, err := f.readAt(buf, off)
	if err != nil {
		return nil, fmt.Errorf("%s (offset %#x): read: %w", where, off, err)
	}
	p, err := install.AnalyzeBytes(buf[:got])
	if err != nil {
		return nil, fmt.Errorf("%s (offset %#x): %w", where, off, err)
	}
	p.Offset = off
	if j, err := f.JumpAt(off); err == nil {
		p.Jump = j
	} else {
		p.NoJump = install.RefusalReason(err)
	}
	return p, nil
}

// maxBoundaryScan bounds how much of a function Analyze decodes to check an
// instruction boundary.
const maxBoundaryScan = 16 << 20

// checkBoundary decodes from the known start st up to off and returns an
// error wrapping ErrNotBoundary if off is inside an instruction, or
// ErrRefused if the code cannot be decoded up to off.
func (f *File) checkBoundary(st start, off, end uint64) error {
	if off-st.off > maxBoundaryScan {
		return fmt.Errorf("%s is too far from a known instruction start to check the instruction boundary: %w", st.at(off), install.ErrRefused)
	}
	stop := off + install.MaxInsnLen
	if stop > end {
		stop = end
	}
	code := make([]byte, stop-st.off)
	n, err := f.readAt(code, st.off)
	if err != nil {
		return fmt.Errorf("read from %s: %w", st.at(st.off), err)
	}
	code = code[:n]
	pos := uint64(0)
	want := off - st.off
	for pos < want {
		l, err := install.InsnLen(code[pos:])
		if err != nil {
			return fmt.Errorf("cannot decode %s while checking the instruction boundary (%v): %w",
				st.at(st.off+pos), err, install.ErrRefused)
		}
		if pos+uint64(l) > want {
			return fmt.Errorf("inside the %d-byte instruction at %s: %w", l, st.at(st.off+pos), ErrNotBoundary)
		}
		pos += uint64(l)
	}
	return nil
}
