package objfile

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// File is an opened x86-64 ELF executable or shared object (PIE or not,
// stripped or not) in which probe locations are resolved and instructions
// analysed. Its contents are read once at Open (headers, symbols) and on
// demand (instruction bytes); it is immutable after Open and safe for
// concurrent use. Close releases the open file.
type File struct {
	path string
	r    *os.File
	size uint64
	// segs is the executable PT_LOAD segments, sorted by file offset.
	segs []segment
	// syms is the defined STT_FUNC symbols of .symtab and .dynsym that lie in
	// an executable segment, deduplicated and sorted by (off, name).
	syms []symbol
	// byName maps a name to the indices in syms of its definitions.
	byName map[string][]int
	// regions is the PLT and unwind regions (starts.go), sorted by start;
	// regionEnd[i] is the largest end among regions[:i+1].
	regions   []region
	regionEnd []uint64
	// isGo: the file has a .go.buildinfo section or runtime.* function
	// symbols (returns.go).
	isGo bool
	// throws: the file has C++ exception tables (returns.go).
	throws bool
	// scan is the branch index of the executable code, built on first
	// use (scan.go).
	scan scanState
}

type segment struct {
	off, filesz, vaddr, memsz uint64
}

type symbol struct {
	name   string
	value  uint64 // st_value (a virtual address)
	size   uint64 // st_size, 0 if unknown
	off    uint64 // file offset of value
	global bool   // STB_GLOBAL or STB_WEAK
}

// Open opens the ELF file at path. It fails with an error wrapping ErrNotELF
// if the file is not an ELF executable or shared object with an executable
// segment, and ErrNotX86_64 if it is an ELF file for another machine or
// class; other errors are the os errors of opening and reading path.
func Open(path string) (*File, error) {
	r, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return OpenFile(path, r)
}

// OpenFile is Open on an open file (it takes ownership of r: Close closes
// it): for a caller that must analyse exactly the inode it identified with
// fstat, whatever is renamed over its path meanwhile. name is for messages.
func OpenFile(name string, r *os.File) (*File, error) {
	f, err := newFile(name, r)
	if err != nil {
		r.Close()
		return nil, err
	}
	return f, nil
}

func newFile(path string, r *os.File) (*File, error) {
	st, err := r.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file: %w", path, ErrNotELF)
	}
	var magic [4]byte
	if _, err := r.ReadAt(magic[:], 0); err != nil || string(magic[:]) != elf.ELFMAG {
		return nil, fmt.Errorf("%s: no ELF magic number: %w", path, ErrNotELF)
	}
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%s: malformed ELF: %v: %w", path, err, ErrNotELF)
	}
	if ef.Class != elf.ELFCLASS64 || ef.Machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%s: ELF %v for %v, want ELFCLASS64 for EM_X86_64: %w",
			path, ef.Class, ef.Machine, ErrNotX86_64)
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return nil, fmt.Errorf("%s: ELF type %v, want an executable or shared object: %w", path, ef.Type, ErrNotELF)
	}
	f := &File{path: path, r: r, size: uint64(st.Size()), byName: make(map[string][]int)}
	for _, p := range ef.Progs {
		if p.Type != elf.PT_LOAD || p.Flags&elf.PF_X == 0 || p.Filesz == 0 {
			continue
		}
		f.segs = append(f.segs, segment{off: p.Off, filesz: p.Filesz, vaddr: p.Vaddr, memsz: p.Memsz})
	}
	if len(f.segs) == 0 {
		return nil, fmt.Errorf("%s: no executable PT_LOAD segment: %w", path, ErrNotELF)
	}
	sort.Slice(f.segs, func(i, j int) bool { return f.segs[i].off < f.segs[j].off })

	type key struct {
		name  string
		value uint64
	}
	seen := make(map[key]int)
	add := func(list []elf.Symbol) {
		for _, s := range list {
			if elf.ST_TYPE(s.Info) != elf.STT_FUNC || s.Section == elf.SHN_UNDEF || s.Name == "" || s.Value == 0 {
				continue
			}
			off, ok := f.vaddrToOff(s.Value)
			if !ok {
				continue
			}
			bind := elf.ST_BIND(s.Info)
			global := bind == elf.STB_GLOBAL || bind == elf.STB_WEAK
			k := key{s.Name, s.Value}
			if i, dup := seen[k]; dup {
				// The same function in .symtab and .dynsym: keep the
				// larger size and the stronger binding.
				if s.Size > f.syms[i].size {
					f.syms[i].size = s.Size
				}
				f.syms[i].global = f.syms[i].global || global
				continue
			}
			seen[k] = len(f.syms)
			f.syms = append(f.syms, symbol{name: s.Name, value: s.Value, size: s.Size, off: off, global: global})
		}
	}
	// Missing tables (a stripped file has no .symtab) are not errors.
	if s, err := ef.Symbols(); err == nil {
		add(s)
	}
	if s, err := ef.DynamicSymbols(); err == nil {
		add(s)
	}
	sort.Slice(f.syms, func(i, j int) bool {
		a, b := &f.syms[i], &f.syms[j]
		if a.off != b.off {
			return a.off < b.off
		}
		return a.name < b.name
	})
	for i, s := range f.syms {
		f.byName[s.name] = append(f.byName[s.name], i)
	}
	f.setRegions(readRegions(f, ef))
	f.isGo = goFile(ef, f.syms)
	f.throws = ef.Section(".gcc_except_table") != nil
	return f, nil
}

// Close closes the underlying file. Methods must not be called after Close.
func (f *File) Close() error { return f.r.Close() }

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// vaddrToOff converts a virtual address in an executable segment's file
// image to a file offset: value - PT_LOAD.Vaddr + PT_LOAD.Off.
func (f *File) vaddrToOff(v uint64) (uint64, bool) {
	for _, s := range f.segs {
		if v >= s.vaddr && v-s.vaddr < s.filesz {
			return v - s.vaddr + s.off, true
		}
	}
	return 0, false
}

// segmentOf returns the executable segment whose file image holds off.
func (f *File) segmentOf(off uint64) (segment, bool) {
	for _, s := range f.segs {
		if off >= s.off && off-s.off < s.filesz {
			return s, true
		}
	}
	return segment{}, false
}

// checkExec returns an error wrapping ErrNotExecutable unless off is inside
// an executable segment's file image and before the end of the file.
func (f *File) checkExec(off uint64) error {
	if off >= f.size {
		return fmt.Errorf("offset %#x is past the end of the file (size %#x): %w", off, f.size, ErrNotExecutable)
	}
	if _, ok := f.segmentOf(off); !ok {
		var b strings.Builder
		for i, s := range f.segs {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "[%#x, %#x)", s.off, s.off+s.filesz)
		}
		return fmt.Errorf("offset %#x is outside the executable segments (file ranges %s): %w", off, b.String(), ErrNotExecutable)
	}
	return nil
}

// ParseNumber parses an unsigned number as locations write offsets, with
// the base rules of the kernel's kstrtoul(s, 0), which uprobe_events uses:
// "0x4a0" or "0X4A0" is hex, a leading 0 means octal ("02240" is 0x4a0, "0"
// is zero), anything else is decimal ("1184"). It reports whether s is one
// such number: "08" (not octal), signs, underscores and overflow are not.
func ParseNumber(s string) (uint64, bool) {
	base := 10
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		s, base = s[2:], 16
	case len(s) > 1 && s[0] == '0':
		s, base = s[1:], 8
	}
	if s == "" || !isDigit(s[0], base) {
		return 0, false
	}
	n, err := strconv.ParseUint(s, base, 64)
	return n, err == nil
}

func isDigit(c byte, base int) bool {
	switch base {
	case 8:
		return c >= '0' && c <= '7'
	case 16:
		return (c >= '0' && c <= '9') || (c|0x20 >= 'a' && c|0x20 <= 'f')
	}
	return c >= '0' && c <= '9'
}

// validSymbolName reports whether s can be a symbol name in a location: not
// empty, not starting with a digit or '-', no '+', no white space or control
// characters.
func validSymbolName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f || c == '+' {
			return false
		}
	}
	return true
}

// Resolve parses the location loc and returns the file offset it names:
// "0x4a0" (hex), "02240" (octal) and "1184" (decimal) are file offsets;
// "sym", "sym+0x10" and "sym+16" are offsets into the STT_FUNC symbol sym of
// .symtab or .dynsym, and so are the quoted forms "\"sym\"" and
// "\"sym\"+0x10" (SplitQuoted), which name any symbol.
// Errors wrap ErrSyntax (unparsable), ErrNoSymbol (no such function, or
// several different functions of that name, none global), ErrPastSymbol (OFF
// at or past the symbol's size, or OFF > 0 into a symbol of unknown size) or
// ErrNotExecutable (outside the executable segments or past the end of the
// file). Resolve does not check instruction boundaries: Analyze does.
func (f *File) Resolve(loc string) (uint64, error) {
	if loc == "" {
		return 0, fmt.Errorf("empty location: %w", ErrSyntax)
	}
	if loc[0] >= '0' && loc[0] <= '9' {
		off, ok := ParseNumber(loc)
		if !ok {
			return 0, fmt.Errorf("%q: want a hex (0x4a0), octal (02240: a leading 0, as in uprobe_events) or decimal (1184) file offset: %w", loc, ErrSyntax)
		}
		if err := f.checkExec(off); err != nil {
			return 0, fmt.Errorf("%q: %w", loc, err)
		}
		return off, nil
	}
	name, rel := loc, uint64(0)
	if loc[0] == '"' {
		var err error
		if name, rel, err = SplitQuoted(loc); err != nil {
			return 0, fmt.Errorf("%q: %v: %w", loc, err, ErrSyntax)
		}
	} else {
		if i := strings.LastIndexByte(loc, '+'); i >= 0 {
			n, ok := ParseNumber(loc[i+1:])
			if !ok {
				return 0, fmt.Errorf("%q: want SYMBOL+OFF with OFF hex (0x10), octal (020) or decimal (16): %w", loc, ErrSyntax)
			}
			name, rel = loc[:i], n
		}
		if !validSymbolName(name) {
			return 0, fmt.Errorf("%q: bad symbol name %q (quote a symbol with '+', white space or a leading digit: \"SYMBOL\"): %w", loc, name, ErrSyntax)
		}
	}
	s, err := f.lookup(name)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", loc, err)
	}
	if s.size == 0 && rel > 0 {
		return 0, fmt.Errorf("%q: symbol %s has no size, only offset 0 is allowed: %w", loc, name, ErrPastSymbol)
	}
	if s.size > 0 && rel >= s.size {
		return 0, fmt.Errorf("%q: offset %#x is past the end of %s (size %#x): %w", loc, rel, name, s.size, ErrPastSymbol)
	}
	off := s.off + rel
	if err := f.checkExec(off); err != nil {
		return 0, fmt.Errorf("%q: %w", loc, err)
	}
	return off, nil
}

// lookup returns the one function symbol called name: the only definition,
// or else the only global one.
func (f *File) lookup(name string) (*symbol, error) {
	idx := f.byName[name]
	switch len(idx) {
	case 0:
		return nil, fmt.Errorf("no function symbol %s in .symtab or .dynsym: %w", name, ErrNoSymbol)
	case 1:
		return &f.syms[idx[0]], nil
	}
	var g *symbol
	ng := 0
	for _, i := range idx {
		if f.syms[i].global {
			g = &f.syms[i]
			ng++
		}
	}
	if ng == 1 {
		return g, nil
	}
	return nil, fmt.Errorf("function symbol %s is ambiguous (%d definitions), use a file offset: %w", name, len(idx), ErrNoSymbol)
}

// Symbolize returns a name for the file offset off for display: "sym" or
// "sym+0x10" when off lies inside a function symbol whose name Resolve maps
// back to it (Resolve(Symbolize(off)) == off), else the hex offset "0x4a0".
// Among several candidates it prefers the closest start, then a global
// symbol, then the shortest and the lexically smallest name.
func (f *File) Symbolize(off uint64) string {
	if s := f.containing(off, true); s != nil {
		if off == s.off {
			return s.name
		}
		return s.name + "+" + "0x" + strconv.FormatUint(off-s.off, 16)
	}
	return "0x" + strconv.FormatUint(off, 16)
}

// containing returns the best function symbol that contains off (see
// Symbolize), or nil. With resolvable, only symbols whose name resolves to
// them are considered.
func (f *File) containing(off uint64, resolvable bool) *symbol {
	// syms is sorted by off: candidates start at or before off; the first
	// containing one found scanning down has the closest start.
	n := sort.Search(len(f.syms), func(i int) bool { return f.syms[i].off > off })
	var best *symbol
	for i := n - 1; i >= 0; i-- {
		s := &f.syms[i]
		if best != nil && s.off < best.off {
			break
		}
		if off-s.off >= s.size && !(s.size == 0 && off == s.off) {
			continue
		}
		if resolvable {
			if r, err := f.lookup(s.name); err != nil || r != s {
				continue
			}
		}
		if best == nil || better(s, best) {
			best = s
		}
	}
	return best
}

func better(a, b *symbol) bool {
	if a.global != b.global {
		return a.global
	}
	if len(a.name) != len(b.name) {
		return len(a.name) < len(b.name)
	}
	return a.name < b.name
}

// readAt reads len(p) bytes at file offset off, fewer at the end of the
// file; it returns the number read.
func (f *File) readAt(p []byte, off uint64) (int, error) {
	n, err := f.r.ReadAt(p, int64(off))
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}
