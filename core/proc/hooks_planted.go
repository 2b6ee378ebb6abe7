//go:build planted

package proc

// worldTestHooks are the planted bugs of the tests (go test -tags planted
// -run Planted), set before the world is used.
type worldTestHooks struct {
	// pokeAsRequest plants the wait-for-tracer cycle of the POKEDATA
	// fallback: a breakpoint write, made by an engine walk that holds the
	// process's mmap_sem, waits for the tracer as an ordinary request,
	// which the tracer may serve only after it took that mmap_sem (a fork,
	// an exit, a loader stop: lockMM) — a deadlock. Poke requests are
	// served apart, holding no lock (tracer.doPoke, servePokes).
	pokeAsRequest bool
}

func (h *worldTestHooks) plantedPokeAsRequest() bool { return h.pokeAsRequest }
