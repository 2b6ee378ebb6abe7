#include "textflag.h"

// func getg() uintptr: the current goroutine's g pointer (in TLS for ABI0
// assembly functions), a cheap identity of the goroutine.
TEXT ·getg(SB),NOSPLIT,$0-8
	MOVQ (TLS), AX
	MOVQ AX, ret+0(FP)
	RET
