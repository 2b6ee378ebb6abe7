package lockdep

// getg returns the address of the calling goroutine's runtime g, which
// identifies it while it runs (getg_amd64.s).
func getg() uintptr

// goid identifies the calling goroutine: its g's address. A g is reused only
// after its goroutine exited, and a goroutine that exits holding a checked
// lock is a bug lockdep does not look for.
func goid() uint64 { return uint64(getg()) }
