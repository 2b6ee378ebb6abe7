// Package pkg holds the functions the Go target probes name by their
// package-path symbols: example.com/gofix/pkg.Tick and
// example.com/gofix/pkg.(*T).Tock.
package pkg

// Counter counts the calls.
var Counter uint64

// Tick is called every round.
//
//go:noinline
func Tick() { Counter++ }

// T has a method.
type T struct{ n uint64 }

// Tock is called every other round.
//
//go:noinline
func (t *T) Tock() { t.n += 2; Counter += t.n }
