package fs

import (
	"os"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

func TestMain(m *testing.M) { os.Exit(testfix.Main(m)) }
