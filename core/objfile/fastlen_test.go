package objfile

import (
	"os"
	"slices"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestFastLen: the branch scan with the table-driven decoder gives exactly
// the index of the scan with x86asm alone — the same instructions, branch
// targets and sources, indirect jmps and undecodable offsets — on private
// copies of bash, perl, libpython3.11, this test binary (Go) and the jump
// fixture; and fastInsn handles most instructions itself.
func TestFastLen(t *testing.T) {
	exe, _ := os.Executable()
	paths := []string{testfix.CC(t, "testdata/jump.c", "-O2")}
	for _, p := range []string{"/usr/bin/bash", "/usr/bin/perl", libpython, exe} {
		if _, err := os.Stat(p); err == nil {
			paths = append(paths, privateCopy(t, p))
		}
	}
	for _, p := range paths {
		f := openT(t, p)
		fast, slow := f.scanBranches(false), f.scanBranches(true)
		if fast.insns != slow.insns || !slices.Equal(fast.targets, slow.targets) || !slices.Equal(fast.indirect, slow.indirect) ||
			!slices.Equal(fast.bad, slow.bad) {
			t.Errorf("%s: fast scan: %d insns %d branches %d indirect %d bad; x86asm: %d %d %d %d", p,
				fast.insns, len(fast.targets), len(fast.indirect), len(fast.bad), slow.insns, len(slow.targets), len(slow.indirect), len(slow.bad))
			diffFirst(t, f, "targets", fast.targets, slow.targets)
			diffFirst(t, f, "indirect", fast.indirect, slow.indirect)
			diffFirst(t, f, "bad", fast.bad, slow.bad)
			continue
		}
		// Same targets; the sources of equal targets may come in another
		// order, so compare the pairs as sets.
		if !slices.Equal(sortedPairs(fast), sortedPairs(slow)) {
			t.Errorf("%s: branch sources differ", p)
		}
		t.Logf("%s: %d instructions, %d branches: fast %v, x86asm %v", p, fast.insns, len(fast.targets), fast.took, slow.took)
	}
}

func sortedPairs(x *branchIndex) [][2]uint64 {
	ps := make([][2]uint64, len(x.targets))
	for i := range ps {
		ps[i] = [2]uint64{x.targets[i], x.srcs[i]}
	}
	slices.SortFunc(ps, func(a, b [2]uint64) int {
		if a[0] != b[0] {
			return int(int64(a[0]-b[0])>>63 | 1)
		}
		if a[1] == b[1] {
			return 0
		}
		return int(int64(a[1]-b[1])>>63 | 1)
	})
	return ps
}

func diffFirst(t *testing.T, f *File, what string, a, b []uint64) {
	t.Helper()
	for i := 0; i < len(a) || i < len(b); i++ {
		if i >= len(a) || i >= len(b) || a[i] != b[i] {
			var x, y uint64
			if i < len(a) {
				x = a[i]
			}
			if i < len(b) {
				y = b[i]
			}
			var buf [16]byte
			f.readAt(buf[:], min(x, y))
			t.Errorf("%s: first difference at %d: fast %#x, x86asm %#x (bytes at %#x: % x)", what, i, x, y, min(x, y), buf)
			return
		}
	}
}

// FuzzFastInsn: wherever fastInsn decodes an instruction itself, x86asm
// decodes the same bytes to the same length and branch kind (and
// displacement).
func FuzzFastInsn(f *testing.F) {
	for _, s := range []string{"\x55", "\x48\x89\xe5", "\xe8\x00\x01\x00\x00", "\x0f\x84\x10\x00\x00\x00", "\xff\x24\xc5\x00\x00\x00\x00",
		"\x66\x0f\x1f\x44\x00\x00", "\x48\xb8\x01\x02\x03\x04\x05\x06\x07\x08", "\xf6\x05\x00\x00\x00\x00\x01", "\xc8\x10\x00\x01",
		"\xa1\x01\x02\x03\x04\x05\x06\x07\x08", "\x67\xa1\x01\x02\x03\x04", "\x66\x81\xc1\x34\x12", "\x0f\xba\xe0\x05"} {
		f.Add([]byte(s))
	}
	for _, b := range [][]byte{{0x41, 0xff, 0xe3}, {0xf3, 0x48, 0xab}, {0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, kind, rel, ok := fastInsn(b)
		if !ok {
			return
		}
		sn, skind, srel, sok := scanInsn(b, true)
		if !sok || sn != n || skind != kind || srel != rel {
			t.Fatalf("% x: fast len %d kind %d rel %d; x86asm len %d kind %d rel %d ok %v", b, n, kind, rel, sn, skind, srel, sok)
		}
	})
}

// TestFastInsnExhaustive: every opcode of the one-byte and 0f maps, with
// each common prefix set, every ModRM byte and two SIB bytes: where
// fastInsn decodes, x86asm agrees (as FuzzFastInsn, systematically).
func TestFastInsnExhaustive(t *testing.T) {
	prefixes := [][]byte{nil, {0x66}, {0xf2}, {0xf3}, {0x67}, {0x48}, {0x41}, {0x4c}, {0x66, 0x48}, {0xf0}, {0x64}, {0x65, 0x48}, {0x2e}, {0x3e}, {0x66, 0x2e}, {0xf3, 0x48}, {0xf2, 0x66}, {0x67, 0x66}, {0x48, 0x66}}
	bad, fast := 0, 0
	for _, pre := range prefixes {
		for two := 0; two < 2; two++ {
			for op := 0; op < 256; op++ {
				for m := 0; m < 256; m++ {
					for _, sib := range []byte{0x24, 0x25} {
						b := append([]byte(nil), pre...)
						if two == 1 {
							b = append(b, 0x0f)
						}
						b = append(b, byte(op), byte(m), sib, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb)
						n, kind, rel, ok := fastInsn(b)
						if !ok {
							continue
						}
						fast++
						sn, skind, srel, sok := scanInsn(b, true)
						if !sok || sn != n || skind != kind || srel != rel {
							if bad++; bad <= 20 {
								t.Errorf("% x: fast len %d kind %d rel %d; x86asm len %d kind %d rel %d ok %v", b[:min(len(b), 6)], n, kind, rel, sn, skind, srel, sok)
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d encodings decoded by fastInsn, %d disagree", fast, bad)
}
