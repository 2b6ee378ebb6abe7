package install

import (
	"os"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestMain removes the fixtures testfix built (the Go target).
func TestMain(m *testing.M) { os.Exit(testfix.Main(m)) }
