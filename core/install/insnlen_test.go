package install

import (
	"encoding/hex"
	"testing"
)

// TestInsnLenVZero: vzeroupper and vzeroall have no ModRM byte; x86asm
// reads one, so a ret after them used to be swallowed (c5 f8 77 c3 was one
// 4-byte instruction). Lengths checked against objdump's.
func TestInsnLenVZero(t *testing.T) {
	for _, c := range []struct {
		hex  string
		want int
	}{
		{"c5f877c3", 3},         // vzeroupper; ret
		{"c5f87790", 3},         // vzeroupper; nop
		{"c5f87700", 3},         // vzeroupper, then a byte that looks like a ModRM
		{"c5fc77c3", 3},         // vzeroall; ret
		{"c4e17877c3", 4},       // vzeroupper in VEX3 form
		{"c4e17c77c3", 4},       // vzeroall in VEX3 form
		{"c5fe7f4760c3", 5},     // vmovdqu %ymm0,0x60(%rdi): has a ModRM
		{"c5fe7f441f80c3", 6},   // vmovdqu %ymm0,-0x80(%rdi,%rbx,1)
		{"c3", 1},               // ret
		{"f30f1efac3", 4},       // endbr64
		{"c20800", 3},           // ret $8
		{"b8c3c3c3c3c3", 5},     // mov $0xc3c3c3c3,%eax
		{"c5f9efc0c3", 4},       // vpxor %xmm0,%xmm0,%xmm0
		{"c4e27d58c0c3", 5},     // vpbroadcastd %xmm0,%ymm0 (VEX3, map 0f38)
		{"c4e37d38c101c3", 6},   // vinserti128 $1,%xmm1,%ymm0,%ymm0 (map 0f3a, imm8)
		{"62f1fe487f07c3", 6},   // vmovdqu64 %zmm0,(%rdi) (EVEX)
		{"62f1fe487f4701c3", 7}, // vmovdqu64 %zmm0,0x40(%rdi) (EVEX, disp8*64)
	} {
		code, err := hex.DecodeString(c.hex)
		if err != nil {
			t.Fatal(err)
		}
		n, err := InsnLen(code)
		if err != nil || n != c.want {
			t.Errorf("InsnLen(%s) = %d, %v; want %d", c.hex, n, err, c.want)
		}
	}
}
