package proc

import (
	"os"
	"testing"

	"github.com/uprobefs/uprobefs/core/lockdep"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

func TestMain(m *testing.M) {
	// The lock-order checker is on in tests; UPROBEFS_BENCH_NOLOCKDEP=1
	// leaves it off so that benchmarks measure production code.
	if os.Getenv("UPROBEFS_BENCH_NOLOCKDEP") == "" {
		lockdep.Enable()
	}
	os.Exit(testfix.Main(m))
}
