package objfile

import (
	"debug/elf"
	"fmt"
	"strings"

	"golang.org/x/arch/x86/x86asm"

	"github.com/uprobefs/uprobefs/core/install"
)

// goFile reports whether ef is Go code: it has the .go.buildinfo section
// the Go linker writes into every executable and shared object it links
// (stripped ones too), or a runtime.* function symbol.
func goFile(ef *elf.File, syms []symbol) bool {
	if ef.Section(".go.buildinfo") != nil {
		return true
	}
	for _, s := range syms {
		if strings.HasPrefix(s.name, "runtime.") {
			return true
		}
	}
	return false
}

// IsGo reports whether the file is a Go program or library (a
// .go.buildinfo section or runtime.* function symbols): one whose return
// addresses must not be rewritten, since the Go runtime copies goroutine
// stacks and walks them.
func (f *File) IsGo() bool { return f.isGo }

// HasExceptions reports whether the file has C++ exception tables
// (.gcc_except_table): exceptions may be unwound through its functions,
// and an unwinder walking a frame whose return address was replaced finds
// no unwind entry there.
func (f *File) HasExceptions() bool { return f.throws }

// Returns returns the file offsets of every near return instruction (c3,
// c2 iw, and the same with prefixes such as f3 c3) of the function symbol
// sym, in increasing order: the function's bytes, [start, start+size), are
// decoded one instruction after the other from its start with
// install.InsnLen and x86asm. A function without a ret (one that ends in a
// tail call or never returns) gives an empty list. Errors wrap ErrNoSymbol
// (as Resolve's for a name), ErrPastSymbol (the symbol has no size, so
// where it ends is unknown), ErrNotExecutable (it does not lie in an
// executable segment's file image) or ErrNotBoundary (the decoding fails
// or runs past the symbol's end: not code that decodes linearly).
func (f *File) Returns(sym string) ([]uint64, error) {
	s, err := f.lookup(sym)
	if err != nil {
		return nil, err
	}
	return f.returns(s)
}

// IsFunctionStart reports whether a function symbol starts at file offset
// off.
func (f *File) IsFunctionStart(off uint64) bool {
	s := f.containing(off, false)
	return s != nil && s.off == off
}

// ReturnsAt is Returns for the function symbol that starts at file offset
// off (as Symbolize names it); errors wrap ErrNoSymbol if none starts there.
func (f *File) ReturnsAt(off uint64) ([]uint64, error) {
	s := f.containing(off, false)
	if s == nil || s.off != off {
		return nil, fmt.Errorf("offset %#x: no function symbol starts there: %w", off, ErrNoSymbol)
	}
	return f.returns(s)
}

func (f *File) returns(s *symbol) ([]uint64, error) {
	if s.size == 0 {
		return nil, fmt.Errorf("%s: the symbol has no size, so where the function ends is unknown: %w", s.name, ErrPastSymbol)
	}
	if s.size > maxBoundaryScan {
		return nil, fmt.Errorf("%s: size %#x is over %#x: %w", s.name, s.size, maxBoundaryScan, ErrNotBoundary)
	}
	seg, ok := f.segmentOf(s.off)
	if !ok || s.off+s.size > seg.off+seg.filesz {
		return nil, fmt.Errorf("%s (offset %#x, size %#x): not inside an executable segment's file image: %w",
			s.name, s.off, s.size, ErrNotExecutable)
	}
	code := make([]byte, s.size)
	n, err := f.readAt(code, s.off)
	if err != nil {
		return nil, fmt.Errorf("%s: read: %w", s.name, err)
	}
	if uint64(n) < s.size {
		return nil, fmt.Errorf("%s: the file ends inside the function: %w", s.name, ErrNotExecutable)
	}
	var rets []uint64
	for i := 0; i < len(code); {
		l, err := install.InsnLen(code[i:])
		if err != nil {
			return nil, fmt.Errorf("%s+%#x (offset %#x): cannot decode the instruction: %v: %w",
				s.name, i, s.off+uint64(i), err, ErrNotBoundary)
		}
		if isRet(code[i : i+l]) {
			rets = append(rets, s.off+uint64(i))
		}
		i += l
	}
	return rets, nil
}

// isRet reports whether insn (one whole instruction) is a near return.
func isRet(insn []byte) bool {
	// Every near return ends in c3, or in c2 and a 16-bit immediate.
	last := insn[len(insn)-1]
	if last != 0xc3 && (len(insn) < 3 || insn[len(insn)-3] != 0xc2) {
		return false
	}
	inst, err := x86asm.Decode(insn, 64)
	return err == nil && inst.Op == x86asm.RET
}

// GoBodyStart returns the file offset of the first instruction after the
// stack-check prologue of the Go function at off ("CMPQ SP, 16(R14); JBE
// morestack", or "LEAQ -N(SP), R12; CMPQ R12, 16(R14); JBE ..." for big
// frames), or off itself for a function without one (NOSPLIT). When the
// stack must grow, morestack copies it and runs the function again from
// its first instruction: the instruction after the check runs exactly once
// per call, the first one once more per stack growth.
func (f *File) GoBodyStart(off uint64) (uint64, error) {
	var code [48]byte
	n, err := f.readAt(code[:], off)
	if err != nil && n == 0 {
		return 0, err
	}
	pos, cmp := 0, false
	for i := 0; i < 3 && pos < n; i++ {
		inst, err := x86asm.Decode(code[pos:n], 64)
		if err != nil {
			return off, nil
		}
		pos += inst.Len
		switch inst.Op {
		case x86asm.LEA:
		case x86asm.CMP:
			for _, a := range inst.Args {
				if m, ok := a.(x86asm.Mem); ok && m.Base == x86asm.R14 && (m.Disp == 0x10 || m.Disp == 0x18) {
					cmp = true
				}
			}
			if !cmp {
				return off, nil
			}
		case x86asm.JBE:
			if cmp {
				return off + uint64(pos), nil
			}
			return off, nil
		default:
			return off, nil
		}
	}
	return off, nil
}
