package objfile

import (
	"fmt"

	"github.com/uprobefs/uprobefs/core/install"
)

// Analyze reads the instruction at file offset off from the file, checks that
// it can be probed and returns its step-over plan. When off lies inside a
// function symbol of known size, the function is decoded from its start and
// an offset inside an instruction is refused. Errors wrap ErrNotExecutable
// (off outside the executable segments or past the end of the file),
// ErrNotBoundary, or ErrRefused, each with the reason and the location as
// Symbolize names it.
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
	if s := f.containing(off, false); s != nil && s.size > 0 && s.off < off {
		if err := f.checkBoundary(s, off, end); err != nil {
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
	return p, nil
}

// maxBoundaryScan bounds how much of a function Analyze decodes to check an
// instruction boundary.
const maxBoundaryScan = 16 << 20

// checkBoundary decodes the function s from its start up to off and returns
// an error wrapping ErrNotBoundary if off is inside an instruction, or
// ErrRefused if the function cannot be decoded up to off.
func (f *File) checkBoundary(s *symbol, off, end uint64) error {
	if off-s.off > maxBoundaryScan {
		return fmt.Errorf("function %s is too large to check the instruction boundary: %w", s.name, install.ErrRefused)
	}
	stop := off + install.MaxInsnLen
	if stop > end {
		stop = end
	}
	code := make([]byte, stop-s.off)
	n, err := f.readAt(code, s.off)
	if err != nil {
		return fmt.Errorf("read %s: %w", s.name, err)
	}
	code = code[:n]
	pos := uint64(0)
	want := off - s.off
	for pos < want {
		l, err := install.InsnLen(code[pos:])
		if err != nil {
			return fmt.Errorf("cannot decode %s+%#x while checking the instruction boundary (%v): %w",
				s.name, pos, err, install.ErrRefused)
		}
		if pos+uint64(l) > want {
			return fmt.Errorf("inside the %d-byte instruction at %s+%#x: %w", l, s.name, pos, ErrNotBoundary)
		}
		pos += uint64(l)
	}
	return nil
}
