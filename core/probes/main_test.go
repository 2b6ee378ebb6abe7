package probes_test

import (
	"flag"
	"os"
	"testing"

	"github.com/uprobefs/uprobefs/core/lockdep"
)

// TestMain turns the lock-order checker on for tests; benchmarks
// (-test.bench set) run without it, as production does.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		lockdep.Enable()
	}
	os.Exit(m.Run())
}
