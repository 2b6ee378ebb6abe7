package install

// TrampPC is where in the original code a thread stands that is at some
// offset of a trampoline: the tracer rewrites a thread's registers with it
// before it lets a signal raised in the trampoline through (a fault of a
// relocated instruction must show the original's context: Go's nil
// pointer panics and JVM-style null checks read it), or to move a thread
// out of a trampoline. OrigAt and TrampPrologue answer the same for
// instruction boundaries; PCAt answers for any offset of the code.
type TrampPC struct {
	// Off: rip = site + Off, the displaced instruction the thread is at
	// (not yet executed), or Len after the last one.
	Off int
	// RSPAdd is added to rsp: in the prologue 128 after the lea below the
	// red zone and 136 while the flags are pushed; 8 in an emulated call
	// after its push.
	RSPAdd int64
	// Prologue: the thread is counting the hit (Off is 0). From the lock
	// incq on, its arithmetic flags are modified and the original ones are
	// the word at rsp (after pushfq, before popfq).
	Prologue bool
}

// PCAt returns where a thread at offset off of the trampoline of j at
// site, placed at at (as Trampoline made it), stands in the original code;
// false past the code (padding, the address pool) or for a placement
// Trampoline refuses.
func (j *JumpPlan) PCAt(site, at uint64, off int) (TrampPC, bool) {
	// The counter's address changes no offset: any within reach will do.
	code, entry, n, starts, err := j.build(site, at, at, nil)
	if err != nil || off < 0 || off >= n {
		return TrampPC{}, false
	}
	if off < entry {
		// The prologue: the state of the last boundary at or before off.
		for b := off; b >= 0; b-- {
			if below, _, ok := TrampPrologue(b); ok {
				return TrampPC{RSPAdd: int64(below), Prologue: true}, true
			}
		}
	}
	if !j.EndsInBranch() {
		// The jump back ends the code: jmp rel32 (e9), else the 6-byte
		// jmp *disp32(%rip) whose small disp32 never starts with e9.
		back := n - 6
		if code[n-5] == tJmp32[0] {
			back = n - 5
		}
		if off >= back {
			return TrampPC{Off: j.Len}, true
		}
	}
	i := len(starts) - 1
	for i > 0 && starts[i] > off {
		i--
	}
	in := j.insns[i]
	pc := TrampPC{Off: in.off}
	if in.kind == jCall && off >= starts[i]+len(tPushImm)+4 {
		pc.RSPAdd = 8 // the return address is pushed: undo it
	}
	return pc, true
}
