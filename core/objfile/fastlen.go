package objfile

import "sync"

// A table-driven length decoder for the common legacy encodings (the
// one-byte and 0f opcode maps), for the branch scan: x86asm.Decode costs
// ~350 ns an instruction, which made the scan of libpython3.11 (720 k
// instructions) take 280 ms. fastInsn handles what it knows exactly and
// says so; everything else (VEX, EVEX, the 0f38/0f3a maps, opcodes invalid
// in 64-bit mode, a branch with an operand-size prefix, a REX prefix
// before a legacy one, lock, several of 66/f2/f3, 3DNow!) goes to x86asm.
// Which (mandatory prefix, REX.W, opcode, ModRM reg, register or memory
// form) combinations it decodes itself is not written by hand: validity()
// asks x86asm once, for a canonical encoding of each, and keeps those where
// both agree (x86asm is strict about reserved encodings, e.g. hint nops
// other than 0f 1f /0). TestFastLen checks that the scan with it gives the
// very same index as the scan with x86asm alone on bash, perl,
// libpython3.11 and a Go binary; TestFastInsnExhaustive and FuzzFastInsn
// compare the two decoders directly.

// Operand classes of an opcode.
const (
	fUnknown = iota // hand to x86asm
	fNone           // no operand bytes
	fModRM          // ModRM (+SIB, displacement)
	fModRMImm8
	fModRMImmZ // ModRM + imm16/imm32 (operand size)
	fImm8
	fImm16
	fImmZ   // imm16/imm32
	fImmV   // b8+r: imm16/imm32/imm64 (REX.W)
	fMoffs  // a0-a3: an 8-byte address (4 with 67)
	fEnter  // c8: imm16 + imm8
	fRel8   // jcc, jmp, loop, jrcxz rel8
	fRel32  // jcc, jmp, call rel32
	fGroup3 // f6/f7: ModRM, + imm when reg is 0 or 1
)

var oneByte, twoByte [256]uint8

// valid[pfx][w][map][op] has bit reg*2+mod3 set where fastInsn may decode
// (pfx: none, 66, f2, f3; w: REX.W; map: one-byte, 0f; mod3: ModRM names
// a register). Built once by validity.
var (
	validOnce sync.Once
	valid     [4][2][2][256]uint16
)

// validity fills valid by asking x86asm about a canonical encoding of each
// combination (~65 k decodes, once per process, on the first scan).
func validity() {
	pfxs := [4][]byte{nil, {0x66}, {0xf2}, {0xf3}}
	for p := range 4 {
		for w := range 2 {
			for m := range 2 {
				for op := range 256 {
					for reg := range 8 {
						for mod3 := range 2 {
							b := append([]byte(nil), pfxs[p]...)
							if w == 1 {
								b = append(b, 0x48)
							}
							if m == 1 {
								b = append(b, 0x0f)
							}
							modrm := byte(reg << 3)
							if mod3 == 1 {
								modrm |= 0xc0
							}
							b = append(b, byte(op), modrm, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd)
							n, kind, rel, ok := fastRaw(b)
							if !ok {
								continue
							}
							sn, skind, srel, sok := scanInsn(b, true)
							if sok && sn == n && skind == kind && srel == rel {
								valid[p][w][m][op] |= 1 << (reg*2 + mod3)
							}
						}
					}
				}
			}
		}
	}
}

func init() {
	set := func(t *[256]uint8, c uint8, ops ...int) {
		for _, o := range ops {
			t[o] = c
		}
	}
	rng := func(t *[256]uint8, c uint8, lo, hi int) {
		for o := lo; o <= hi; o++ {
			t[o] = c
		}
	}
	t := &oneByte
	for base := 0x00; base <= 0x38; base += 8 { // ALU ops
		rng(t, fModRM, base, base+3)
		set(t, fImm8, base+4)
		set(t, fImmZ, base+5)
	}
	rng(t, fNone, 0x50, 0x5f)
	set(t, fModRM, 0x63)
	set(t, fImmZ, 0x68)
	set(t, fModRMImmZ, 0x69)
	set(t, fImm8, 0x6a)
	set(t, fModRMImm8, 0x6b)
	rng(t, fNone, 0x6c, 0x6f)
	rng(t, fRel8, 0x70, 0x7f)
	set(t, fModRMImm8, 0x80, 0x83)
	set(t, fModRMImmZ, 0x81)
	rng(t, fModRM, 0x84, 0x8f)
	rng(t, fNone, 0x90, 0x99)
	rng(t, fNone, 0x9b, 0x9f)
	rng(t, fMoffs, 0xa0, 0xa3)
	rng(t, fNone, 0xa4, 0xa7)
	set(t, fImm8, 0xa8)
	set(t, fImmZ, 0xa9)
	rng(t, fNone, 0xaa, 0xaf)
	rng(t, fImm8, 0xb0, 0xb7)
	rng(t, fImmV, 0xb8, 0xbf)
	set(t, fModRMImm8, 0xc0, 0xc1, 0xc6)
	set(t, fImm16, 0xc2, 0xca)
	set(t, fNone, 0xc3, 0xc9, 0xcb, 0xcc, 0xcf)
	set(t, fModRMImmZ, 0xc7)
	set(t, fEnter, 0xc8)
	set(t, fImm8, 0xcd)
	rng(t, fModRM, 0xd0, 0xd3)
	set(t, fNone, 0xd7)
	rng(t, fModRM, 0xd8, 0xdf)
	rng(t, fRel8, 0xe0, 0xe3)
	rng(t, fImm8, 0xe4, 0xe7)
	set(t, fRel32, 0xe8, 0xe9)
	set(t, fRel8, 0xeb)
	rng(t, fNone, 0xec, 0xef)
	set(t, fNone, 0xf1, 0xf4, 0xf5)
	set(t, fGroup3, 0xf6, 0xf7)
	rng(t, fNone, 0xf8, 0xfd)
	set(t, fModRM, 0xfe, 0xff)

	t = &twoByte
	set(t, fModRM, 0x00, 0x01, 0x02, 0x03, 0x0d)
	set(t, fNone, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0b, 0x0e)
	rng(t, fModRM, 0x10, 0x1f)
	rng(t, fModRM, 0x20, 0x23)
	rng(t, fModRM, 0x28, 0x2f)
	rng(t, fNone, 0x30, 0x35)
	set(t, fNone, 0x37)
	rng(t, fModRM, 0x40, 0x6f)
	rng(t, fModRMImm8, 0x70, 0x73)
	rng(t, fModRM, 0x74, 0x76)
	set(t, fNone, 0x77)
	rng(t, fModRM, 0x7c, 0x7f)
	rng(t, fRel32, 0x80, 0x8f)
	rng(t, fModRM, 0x90, 0x9f)
	set(t, fNone, 0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa)
	set(t, fModRM, 0xa3, 0xa5, 0xab, 0xad, 0xae, 0xaf)
	set(t, fModRMImm8, 0xa4, 0xac, 0xba, 0xc2, 0xc4, 0xc5, 0xc6)
	rng(t, fModRM, 0xb0, 0xb7)
	set(t, fModRM, 0xb9)
	rng(t, fModRM, 0xbb, 0xbf)
	set(t, fModRM, 0xc0, 0xc1, 0xc3, 0xc7)
	rng(t, fNone, 0xc8, 0xcf)
	rng(t, fModRM, 0xd0, 0xff)
}

// Branch kinds fastInsn reports.
const (
	bNone     = iota
	bRel      // a direct branch: rel is its displacement
	bIndirect // jmp through a register or memory (ff /4, ff /5)
)

// fastInsn returns the length of the instruction at the start of b, its
// branch kind and displacement; ok is false where x86asm must decide.
func fastInsn(b []byte) (n, kind int, rel int64, ok bool) {
	validOnce.Do(validity)
	return fastDecode(b, true)
}

// fastRaw is fastInsn without the validity check (for validity itself).
func fastRaw(b []byte) (n, kind int, rel int64, ok bool) { return fastDecode(b, false) }

func fastDecode(b []byte, check bool) (n, kind int, rel int64, ok bool) {
	i, opsize, addr32, rexW := 0, false, false, false
	pfx, npfx := 0, 0
	for ; i < len(b) && i < 15; i++ {
		switch c := b[i]; c {
		case 0x66:
			opsize, pfx = true, 1
			npfx++
			continue
		case 0xf2:
			pfx = 2
			npfx++
			continue
		case 0xf3:
			pfx = 3
			npfx++
			continue
		case 0x67:
			addr32 = true
			continue
		case 0xf0:
			return 0, 0, 0, false // lock: x86asm checks where it may stand
		case 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65:
			continue
		}
		break
	}
	if npfx > 1 {
		return 0, 0, 0, false
	}
	if i < len(b) && b[i]&0xf0 == 0x40 {
		rexW = b[i]&8 != 0
		i++
		if i < len(b) {
			switch b[i] {
			case 0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65:
				return 0, 0, 0, false // a REX before a legacy prefix is ignored: x86asm decides
			}
			if b[i]&0xf0 == 0x40 {
				return 0, 0, 0, false
			}
		}
	}
	if i >= len(b) {
		return 0, 0, 0, false
	}
	op := b[i]
	i++
	var class uint8
	two := op == 0x0f
	if two {
		if i >= len(b) {
			return 0, 0, 0, false
		}
		op = b[i]
		i++
		class = twoByte[op]
	} else {
		class = oneByte[op]
	}
	need := func(k int) bool { return i+k <= len(b) }
	immZ := 4
	if opsize && !rexW {
		immZ = 2
	}
	mpos := -1
	modrm := func() bool {
		if !need(1) {
			return false
		}
		mpos = i
		m := b[i]
		i++
		mod, rm := m>>6, m&7
		if mod == 3 {
			return true
		}
		if rm == 4 {
			if !need(1) {
				return false
			}
			sib := b[i]
			i++
			if mod == 0 && sib&7 == 5 {
				i += 4
			}
		} else if mod == 0 && rm == 5 {
			i += 4
		}
		switch mod {
		case 1:
			i++
		case 2:
			i += 4
		}
		return true
	}
	imm := 0
	switch class {
	case fUnknown:
		return 0, 0, 0, false
	case fNone:
	case fModRM:
		if !modrm() {
			return 0, 0, 0, false
		}
	case fModRMImm8:
		if !modrm() {
			return 0, 0, 0, false
		}
		imm = 1
	case fModRMImmZ:
		if !modrm() {
			return 0, 0, 0, false
		}
		imm = immZ
	case fGroup3:
		if !need(1) {
			return 0, 0, 0, false
		}
		reg := b[i] >> 3 & 7
		if !modrm() {
			return 0, 0, 0, false
		}
		if reg <= 1 {
			imm = 1
			if op == 0xf7 {
				imm = immZ
			}
		}
	case fImm8:
		imm = 1
	case fImm16:
		imm = 2
	case fImmZ:
		imm = immZ
	case fImmV:
		imm = immZ
		if rexW {
			imm = 8
		}
	case fMoffs:
		imm = 8
		if addr32 {
			imm = 4
		}
	case fEnter:
		imm = 3
	case fRel8, fRel32:
		if opsize || addr32 {
			return 0, 0, 0, false
		}
		k := 1
		if class == fRel32 {
			k = 4
		}
		if !need(k) || i+k > 15 {
			return 0, 0, 0, false
		}
		if check && !validFor(pfx, rexW, two, op, b, -1) {
			return 0, 0, 0, false
		}
		if k == 1 {
			rel = int64(int8(b[i]))
		} else {
			rel = int64(int32(uint32(b[i]) | uint32(b[i+1])<<8 | uint32(b[i+2])<<16 | uint32(b[i+3])<<24))
		}
		return i + k, bRel, rel, true
	}
	i += imm
	if i > 15 || i > len(b) {
		return 0, 0, 0, false
	}
	if check && !validFor(pfx, rexW, two, op, b, mpos) {
		return 0, 0, 0, false
	}
	if mpos >= 0 && b[mpos]>>6 == 3 && (!two && (op == 0xc6 || op == 0xc7 || op >= 0xd8 && op <= 0xdf) ||
		two && (op == 0x01 || op == 0x1e || op == 0xae || op == 0xc7)) {
		// Register forms that differ by the rm field too (xabort, xbegin,
		// x87, the system groups, endbr, the fences, rdrand).
		return 0, 0, 0, false
	}
	if !two && op == 0xff {
		if reg := b[mpos] >> 3 & 7; reg == 4 || reg == 5 {
			return i, bIndirect, 0, true
		}
	}
	if !two && op == 0xc7 && b[mpos] == 0xf8 {
		return 0, 0, 0, false // xbegin: a relative abort address
	}
	return i, bNone, 0, true
}

// validFor looks the decoded combination up in valid; mpos is the offset
// of the ModRM byte, -1 if none (then the reg 0, memory-form entry).
func validFor(pfx int, rexW, two bool, op byte, b []byte, mpos int) bool {
	w, m := 0, 0
	if rexW {
		w = 1
	}
	if two {
		m = 1
	}
	bit := 0
	if mpos >= 0 {
		bit = int(b[mpos]>>3&7) * 2
		if b[mpos]>>6 == 3 {
			bit++
		}
	}
	return valid[pfx][w][m][op]&(1<<bit) != 0
}
