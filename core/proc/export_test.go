package proc

// allListening reports whether every traced thread of pid is in a
// group-stop kept with PTRACE_LISTEN.
func (w *World) allListening(pid int) bool {
	ok := false
	w.t.do(func() {
		p := w.procs[pid]
		if p == nil || len(p.threads) == 0 {
			return
		}
		for _, th := range p.threads {
			if th.state != listening {
				return
			}
		}
		ok = true
	})
	return ok
}
