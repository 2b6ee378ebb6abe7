package install

// OrigAt (ev: as the trampoline was made, nil for Trampoline) returns the original address of the displaced instruction whose
// relocated copy starts at rip in the trampoline of the site at site,
// placed at at (site itself for a rip in the counting prologue, before
// the first one), and false for a rip at no such boundary: where a fault
// or a signal in a trampoline is shown to the program.
func (j *JumpPlan) OrigAt(site, at, rip uint64, ev *EvMem) (uint64, bool) {
	// The memory's addresses change no offset: any within reach will do.
	var e *EvMem
	if ev != nil {
		e = &EvMem{Counter: at, Flag: at, Head: at, Ring: at, Mask: ev.Mask, ID: ev.ID, PerCPU: ev.PerCPU}
	}
	_, entry, _, starts, err := j.build(site, at, at, e)
	if err != nil || rip < at {
		return 0, false
	}
	if rip < at+uint64(entry) {
		return site, true
	}
	for i, off := range starts {
		if rip == at+uint64(off) {
			return site + uint64(j.insns[i].off), true
		}
	}
	return 0, false
}

// TrampPrologue tells the state of a thread at offset off of a
// trampoline's counting prologue (off < the entry Trampoline returns): how
// far below the program's stack pointer it has moved rsp (0, 128, or 136
// with the flags pushed), and whether it has counted the hit; ok is false
// for an offset at no instruction boundary of the prologue. With it a
// thread stopped there is put back at the site, as if it had not jumped.
func TrampPrologue(off int) (below uint64, counted, ok bool) {
	afterLea := len(tLeaDown)
	afterPushf := afterLea + len(tPushf)
	afterInc := afterPushf + len(tLockInc) + 4
	afterPopf := afterInc + len(tPopf)
	switch off {
	case 0:
		return 0, false, true
	case afterLea:
		return 128, false, true
	case afterPushf:
		return 136, false, true
	case afterInc:
		return 136, true, true
	case afterPopf:
		return 128, true, true
	case tEntry:
		return 0, true, true
	}
	return 0, false, false
}
