package fetch

import (
	"errors"
	"testing"

	"github.com/uprobefs/uprobefs/core/install"
)

// fakeMem is a sparse address space of mapped regions, read the way
// /proc/PID/mem reads: byte by byte up to the first unmapped one.
type fakeMem struct {
	regions []region
	reads   int
}

type region struct {
	addr uint64
	data []byte
}

var errFault = errors.New("fault")

func (m *fakeMem) ReadMemory(addr uint64, p []byte) (int, error) {
	m.reads++
	for i := range p {
		b, ok := m.byteAt(addr + uint64(i))
		if !ok {
			return i, errFault
		}
		p[i] = b
	}
	return len(p), nil
}

func (m *fakeMem) byteAt(a uint64) (byte, bool) {
	for _, r := range m.regions {
		if a >= r.addr && a-r.addr < uint64(len(r.data)) {
			return r.data[a-r.addr], true
		}
	}
	return 0, false
}

func (m *fakeMem) put(addr uint64, data []byte) { m.regions = append(m.regions, region{addr, data}) }

func le(v uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// The world of the Eval tests:
//
//	0x1000  struct { char *name; u32 len; s32 neg; u64 next } = {0x2000, 5, -3, 0x1000}
//	0x2000  "hello\0"
//	0x3000  "end at page\0" ending exactly at 0x4000; 0x4000.. unmapped
//	0x5ffa  "crosses" with no NUL before 0x6000 (unmapped)
//	0x7000  the stack: return address, then words 7, 8, 9 (arguments 7..9)
//	0x7ffc  4 readable bytes 11 22 33 44, then 0x8000 unmapped
//	0x10000 4095 'a's then NUL; 0x12000 4096 'b's, no NUL
func world(t *testing.T) (*fakeMem, *install.Regs) {
	t.Helper()
	m := &fakeMem{}
	neg := int32(-3)
	m.put(0x1000, cat(le(0x2000), []byte{5, 0, 0, 0}, le(uint64(uint32(neg)))[:4], le(0x1000)))
	m.put(0x2000, []byte("hello\x00"))
	s := "end at page\x00"
	m.put(0x4000-uint64(len(s)), []byte(s))
	m.put(0x5ffa, []byte("crosse"))
	m.put(0x7000, cat(le(0x401234), le(7), le(8), le(9)))
	m.put(0x7ffc, []byte{0x11, 0x22, 0x33, 0x44})
	long := make([]byte, MaxString)
	for i := range long {
		long[i] = 'a'
	}
	long[MaxString-1] = 0
	m.put(0x10000, long)
	nonul := make([]byte, MaxString)
	for i := range nonul {
		nonul[i] = 'b'
	}
	m.put(0x12000, nonul)
	regs := &install.Regs{
		Rdi: 0x1000, Rsi: 0xfffffffffffffffe, Rdx: 0x2000, Rcx: 0x1122334455667788,
		R8: 8, R9: 9, Rax: 0xabcdef, Rbx: 0x0102030405060708, Rsp: 0x7000, Rbp: 0x7ffc,
		Rip: 0x401000, Eflags: 0x246, R10: 10, R11: 11, R12: 12, R13: 13, R14: 14, R15: 15,
		OrigRax: 0xffffffffffffffff, Cs: 0x33, Ss: 0x2b, FsBase: 0x7f0000001000,
	}
	return m, regs
}
