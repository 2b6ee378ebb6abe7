package manager

import (
	"os"
	"testing"

	"github.com/uprobefs/uprobefs/core/lockdep"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

func TestMain(m *testing.M) {
	lockdep.Enable()
	os.Exit(testfix.Main(m))
}
