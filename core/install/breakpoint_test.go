package install

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
)

// byteMem is a Memory over one small region that records writes.
type byteMem struct {
	base   uint64
	b      []byte
	writes int
	err    error // returned by every access when set
}

func (m *byteMem) ReadMemory(vaddr uint64, p []byte) error {
	if m.err != nil {
		return m.err
	}
	if vaddr < m.base || vaddr-m.base+uint64(len(p)) > uint64(len(m.b)) {
		return fmt.Errorf("read %#x: %w", vaddr, syscall.EFAULT)
	}
	copy(p, m.b[vaddr-m.base:])
	return nil
}

func (m *byteMem) WriteMemory(vaddr uint64, p []byte) error {
	if m.err != nil {
		return m.err
	}
	if vaddr < m.base || vaddr-m.base+uint64(len(p)) > uint64(len(m.b)) {
		return fmt.Errorf("write %#x: %w", vaddr, syscall.EFAULT)
	}
	if len(p) != 1 {
		return fmt.Errorf("write of %d bytes", len(p))
	}
	m.writes++
	copy(m.b[vaddr-m.base:], p)
	return nil
}

func TestBreakpoint(t *testing.T) {
	const at = 0x1001
	for _, c := range []struct {
		name      string
		mem       byte  // the byte in memory before
		insert    error // InsertBreakpoint's error
		afterIns  byte  // the byte after InsertBreakpoint
		remove    error // RemoveBreakpoint's error (after insert)
		afterRem  byte  // the byte after RemoveBreakpoint
		memErr    error // every access fails
		insWrites int   // writes done by insert
	}{
		{name: "original", mem: 0x55, afterIns: 0xcc, afterRem: 0x55, insWrites: 1},
		{name: "already", mem: 0xcc, insert: syscall.EEXIST, afterIns: 0xcc, afterRem: 0x55},
		{name: "other", mem: 0x90, insert: syscall.EINVAL, afterIns: 0x90, afterRem: 0x90, remove: syscall.EINVAL},
		{name: "gone", mem: 0x55, memErr: fmt.Errorf("pid 42: %w", syscall.ESRCH), insert: syscall.ESRCH, remove: syscall.ESRCH},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := &byteMem{base: 0x1000, b: []byte{0x11, c.mem, 0x22}, err: c.memErr}
			insn := []byte{0x55, 0x22} // the instruction's bytes in the file
			err := InsertBreakpoint(m, at, insn)
			if !errors.Is(err, c.insert) || (c.insert == nil) != (err == nil) {
				t.Fatalf("InsertBreakpoint = %v, want %v", err, c.insert)
			}
			if c.memErr != nil {
				if err := RemoveBreakpoint(m, at, insn); !errors.Is(err, c.remove) {
					t.Fatalf("RemoveBreakpoint = %v, want %v", err, c.remove)
				}
				return
			}
			if m.b[1] != c.afterIns || m.writes != c.insWrites || m.b[0] != 0x11 || m.b[2] != 0x22 {
				t.Fatalf("after insert: % x, %d writes", m.b, m.writes)
			}
			if err := RemoveBreakpoint(m, at, insn); !errors.Is(err, c.remove) || (c.remove == nil) != (err == nil) {
				t.Fatalf("RemoveBreakpoint = %v, want %v", err, c.remove)
			}
			if m.b[1] != c.afterRem || m.b[0] != 0x11 || m.b[2] != 0x22 {
				t.Fatalf("after remove: % x", m.b)
			}
			// Removing twice writes nothing more.
			w := m.writes
			if err := RemoveBreakpoint(m, at, insn); !errors.Is(err, c.remove) || m.writes != w {
				t.Fatalf("second RemoveBreakpoint = %v, %d writes", err, m.writes-w)
			}
		})
	}
	m := &byteMem{base: 0x1000, b: []byte{0xcc}}
	if err := InsertBreakpoint(m, 0x1000, []byte{0xcc}); !errors.Is(err, syscall.EINVAL) || m.writes != 0 {
		t.Fatalf("InsertBreakpoint(orig int3) = %v", err)
	}
	if err := InsertBreakpoint(m, 0x2000, []byte{0x55}); !errors.Is(err, syscall.EFAULT) {
		t.Fatalf("InsertBreakpoint(unmapped) = %v", err)
	}
	// Every byte counts: a memory holding the first byte of the
	// instruction but not the rest is not the file's code (a 0x48 prefix
	// matches many instructions).
	m = &byteMem{base: 0x1000, b: []byte{0x48, 0x89, 0xe5}}
	if err := InsertBreakpoint(m, 0x1000, []byte{0x48, 0x8b, 0x05}); !errors.Is(err, syscall.EINVAL) || m.writes != 0 {
		t.Fatalf("InsertBreakpoint(same first byte, other instruction) = %v, %d writes", err, m.writes)
	}
	m = &byteMem{base: 0x1000, b: []byte{0xcc, 0x89, 0xe5}}
	if err := RemoveBreakpoint(m, 0x1000, []byte{0x48, 0x8b, 0x05}); !errors.Is(err, syscall.EINVAL) || m.writes != 0 {
		t.Fatalf("RemoveBreakpoint(int3 over another instruction) = %v, %d writes", err, m.writes)
	}
}
