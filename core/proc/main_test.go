package proc

import (
	"os"
	"testing"

	"github.com/uprobefs/uprobefs/core/lockdep"
)

func TestMain(m *testing.M) {
	lockdep.Enable() // the lock-order checker is on in tests
	os.Exit(m.Run())
}
