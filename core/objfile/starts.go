package objfile

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"
)

// Known instruction starts. An instruction boundary is only known by
// decoding from an address where an instruction is known to start: a
// function symbol's value, a PLT entry (the linker lays them out at a fixed
// stride), or the initial location of an unwind entry (an .eh_frame FDE,
// which compilers emit for every function, stripped or not). Analyze
// decodes from the closest such start at or before the offset among the
// regions that cover it, and refuses an offset that no region covers.

// region is a range of code, as file offsets, whose instructions are
// known to start at start (and, with stride, at every stride bytes from
// it: PLT entries).
type region struct {
	start, end uint64
	stride     uint64 // 0: one start
	what       string // "PLT entry", "unwind entry (.eh_frame FDE)"
}

// startFor returns the closest known instruction start at or before off
// in r.
func (r region) startFor(off uint64) uint64 {
	if r.stride == 0 {
		return r.start
	}
	return off - (off-r.start)%r.stride
}

// start is a known instruction start: a file offset and a name for it.
type start struct {
	off  uint64
	sym  string // the function symbol starting there, or ""
	what string // else what starts there ("PLT entry", ...)
}

// at names the instruction at file offset off, decoded from s, for
// messages: "main+0x4", or "0x1031 (decoded from the PLT entry at 0x1030)".
func (s start) at(off uint64) string {
	if s.sym != "" {
		return fmt.Sprintf("%s+%#x", s.sym, off-s.off)
	}
	return fmt.Sprintf("%#x (decoded from the %s at %#x)", off, s.what, s.off)
}

// startBefore returns the closest known instruction start at or before off
// among the function symbols, PLT entries and unwind entries that cover
// off; false if none covers it.
func (f *File) startBefore(off uint64) (start, bool) {
	best, ok := start{}, false
	if s := f.containing(off, false); s != nil {
		best, ok = start{off: s.off, sym: s.name}, true
	}
	n := sort.Search(len(f.regions), func(i int) bool { return f.regions[i].start > off })
	for i := n - 1; i >= 0 && f.regionEnd[i] > off; i-- {
		r := f.regions[i]
		if off >= r.end {
			continue
		}
		if st := r.startFor(off); !ok || st > best.off {
			best, ok = start{off: st, what: r.what}, true
		}
	}
	return best, ok
}

// readRegions collects f's PLT and unwind regions from ef, sorted by start.
// A malformed .eh_frame gives the FDEs read before the fault: fewer known
// starts, never a wrong one.
func readRegions(f *File, ef *elf.File) []region {
	var rs []region
	for _, name := range []string{".plt", ".plt.sec", ".plt.got"} {
		s := ef.Section(name)
		if s == nil || s.Type != elf.SHT_PROGBITS || s.Size == 0 {
			continue
		}
		stride := s.Entsize
		if stride == 0 || stride > s.Size {
			stride = 16
		}
		if off, ok := f.vaddrToOff(s.Addr); ok {
			rs = append(rs, region{start: off, end: off + s.Size, stride: stride, what: "PLT entry"})
		}
	}
	data, addr := ehFrame(ef)
	for _, fde := range parseEhFrame(data, addr) {
		lo, ok1 := f.vaddrToOff(fde[0])
		if !ok1 || fde[1] == 0 {
			continue
		}
		rs = append(rs, region{start: lo, end: lo + fde[1], what: "unwind entry (.eh_frame FDE)"})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].start < rs[j].start })
	return rs
}

// setRegions records rs and the running maximum of their ends (startBefore
// stops scanning back where no earlier region reaches off).
func (f *File) setRegions(rs []region) {
	f.regions = rs
	f.regionEnd = make([]uint64, len(rs))
	m := uint64(0)
	for i, r := range rs {
		m = max(m, r.end)
		f.regionEnd[i] = m
	}
}

// maxEhFrame bounds the .eh_frame read through PT_GNU_EH_FRAME.
const maxEhFrame = 64 << 20

// ehFrame returns the contents and virtual address of f's .eh_frame: its
// section, or (section headers stripped) the one .eh_frame_hdr points to.
func ehFrame(ef *elf.File) ([]byte, uint64) {
	if s := ef.Section(".eh_frame"); s != nil && s.Type != elf.SHT_NOBITS {
		if b, err := s.Data(); err == nil {
			return b, s.Addr
		}
	}
	for _, p := range ef.Progs {
		if p.Type != elf.PT_GNU_EH_FRAME || p.Filesz < 8 {
			continue
		}
		hdr := make([]byte, 8+8)
		n, _ := p.ReadAt(hdr, 0)
		hdr = hdr[:n]
		if len(hdr) < 8 || hdr[0] != 1 {
			return nil, 0
		}
		r := ehReader{b: hdr, pos: 4, vaddr: p.Vaddr}
		ptr, ok := r.encoded(hdr[1])
		if !ok {
			return nil, 0
		}
		// The frame data runs to the end of the segment holding it.
		for _, q := range ef.Progs {
			if q.Type != elf.PT_LOAD || ptr < q.Vaddr || ptr-q.Vaddr >= q.Filesz {
				continue
			}
			b := make([]byte, min(q.Filesz-(ptr-q.Vaddr), maxEhFrame))
			n, _ := q.ReadAt(b, int64(ptr-q.Vaddr))
			return b[:n], ptr
		}
	}
	return nil, 0
}

// parseEhFrame returns the [initial location, range] of every FDE of the
// .eh_frame data b at virtual address addr. It stops at the terminator, at
// the end of b, or at the first malformed record.
func parseEhFrame(b []byte, addr uint64) [][2]uint64 {
	var out [][2]uint64
	cies := map[uint64]byte{} // CIE offset -> FDE pointer encoding
	for pos := uint64(0); pos+4 <= uint64(len(b)); {
		start := pos
		length := uint64(binary.LittleEndian.Uint32(b[pos:]))
		pos += 4
		if length == 0 {
			break // terminator
		}
		if length == 0xffffffff {
			if pos+8 > uint64(len(b)) {
				break
			}
			length = binary.LittleEndian.Uint64(b[pos:])
			pos += 8
		}
		if length > uint64(len(b))-pos || length < 4 {
			break
		}
		body := b[pos : pos+length]
		next := pos + length
		id := uint64(binary.LittleEndian.Uint32(body))
		if id == 0 {
			enc, ok := parseCIE(body[4:])
			if !ok {
				break
			}
			cies[start] = enc
		} else {
			// An FDE: id is the distance back to its CIE from the id.
			cie := pos - id
			enc, ok := cies[cie]
			if !ok || id > pos {
				break
			}
			r := ehReader{b: b[:next], pos: pos + 4, vaddr: addr}
			begin, ok1 := r.encoded(enc)
			rng, ok2 := r.encoded(enc & 0x0f) // the range: the format only
			if !ok1 || !ok2 || begin+rng < begin {
				break // unreadable, or a range past the address space
			}
			out = append(out, [2]uint64{begin, rng})
		}
		pos = next
	}
	return out
}

// parseCIE returns a CIE's FDE pointer encoding (augmentation 'R'; absolute
// 8-byte pointers without it). b starts at the version byte.
func parseCIE(b []byte) (byte, bool) {
	r := ehReader{b: b}
	ver, ok := r.byte()
	if !ok || ver != 1 && ver != 3 {
		return 0, false
	}
	aug := r.cstring()
	r.uleb() // code alignment
	r.sleb() // data alignment
	if ver == 1 {
		r.byte() // return address register
	} else {
		r.uleb()
	}
	enc := byte(0) // DW_EH_PE_absptr
	if len(aug) == 0 || aug[0] != 'z' {
		return enc, !r.bad && (len(aug) == 0 || aug == "eh")
	}
	r.uleb() // augmentation data length
	for _, c := range aug[1:] {
		switch c {
		case 'R':
			e, _ := r.byte()
			enc = e
		case 'P':
			e, _ := r.byte()
			if _, ok := r.encoded(e); !ok {
				return 0, false
			}
		case 'L':
			r.byte()
		case 'S', 'B', 'G':
		default:
			return 0, false // unknown augmentation: its data cannot be skipped
		}
	}
	return enc, !r.bad
}

// ehReader reads DWARF exception-handling encoded values from b; vaddr is
// the virtual address of b[0] (for pc-relative values).
type ehReader struct {
	b     []byte
	pos   uint64
	vaddr uint64
	bad   bool
}

func (r *ehReader) take(n uint64) []byte {
	if r.bad || n > uint64(len(r.b)) || r.pos > uint64(len(r.b))-n {
		r.bad = true
		return nil
	}
	v := r.b[r.pos : r.pos+n]
	r.pos += n
	return v
}

func (r *ehReader) byte() (byte, bool) {
	v := r.take(1)
	if v == nil {
		return 0, false
	}
	return v[0], true
}

func (r *ehReader) cstring() string {
	for i := r.pos; i < uint64(len(r.b)); i++ {
		if r.b[i] == 0 {
			s := string(r.b[r.pos:i])
			r.pos = i + 1
			return s
		}
	}
	r.bad = true
	return ""
}

func (r *ehReader) uleb() uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		c, ok := r.byte()
		if !ok {
			return 0
		}
		if shift < 64 {
			v |= uint64(c&0x7f) << shift
		}
		if c&0x80 == 0 {
			return v
		}
	}
}

func (r *ehReader) sleb() int64 {
	var v int64
	shift := uint(0)
	for {
		c, ok := r.byte()
		if !ok {
			return 0
		}
		if shift < 64 {
			v |= int64(c&0x7f) << shift
		}
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return v
		}
	}
}

// encoded reads a value of DW_EH_PE encoding enc: absolute or pc-relative
// (others, datarel/textrel/funcrel and indirect, are refused).
func (r *ehReader) encoded(enc byte) (uint64, bool) {
	if enc == 0xff {
		return 0, false // DW_EH_PE_omit
	}
	at := r.vaddr + r.pos
	var v uint64
	switch enc & 0x0f {
	case 0x00, 0x04: // absptr, udata8
		b := r.take(8)
		if b == nil {
			return 0, false
		}
		v = binary.LittleEndian.Uint64(b)
	case 0x01:
		v = r.uleb()
	case 0x02:
		b := r.take(2)
		if b == nil {
			return 0, false
		}
		v = uint64(binary.LittleEndian.Uint16(b))
	case 0x03:
		b := r.take(4)
		if b == nil {
			return 0, false
		}
		v = uint64(binary.LittleEndian.Uint32(b))
	case 0x09:
		v = uint64(r.sleb())
	case 0x0a:
		b := r.take(2)
		if b == nil {
			return 0, false
		}
		v = uint64(int64(int16(binary.LittleEndian.Uint16(b))))
	case 0x0b:
		b := r.take(4)
		if b == nil {
			return 0, false
		}
		v = uint64(int64(int32(binary.LittleEndian.Uint32(b))))
	case 0x0c:
		b := r.take(8)
		if b == nil {
			return 0, false
		}
		v = binary.LittleEndian.Uint64(b)
	default:
		return 0, false
	}
	if r.bad {
		return 0, false
	}
	switch enc & 0x70 {
	case 0x00:
	case 0x10: // pcrel
		v += at
	default:
		return 0, false
	}
	if enc&0x80 != 0 {
		return 0, false // indirect
	}
	return v, true
}
