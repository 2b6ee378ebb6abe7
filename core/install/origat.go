package install

// OrigAt returns the original address of the displaced instruction whose
// relocated copy starts at rip in the trampoline of the site at site,
// placed at at (site itself for a rip in the counting prologue, before
// the first one), and false for a rip at no such boundary: where a fault
// or a signal in a trampoline is shown to the program.
func (j *JumpPlan) OrigAt(site, at, rip uint64) (uint64, bool) {
	// The counter's address changes no offset: any within reach will do.
	_, entry, _, starts, err := j.build(site, at, at)
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
