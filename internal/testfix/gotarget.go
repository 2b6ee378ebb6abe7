package testfix

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// GoTargetSymbols are the package-path symbols of GoTarget's functions.
const (
	GoTick = "example.com/gofix/pkg.Tick"
	GoTock = "example.com/gofix/pkg.(*T).Tock"
)

// GoTarget returns a private copy (in tb's temp dir) of the Go target
// fixture (testdata/gotarget: a module example.com/gofix whose package pkg
// has GoTick and GoTock), built once per test binary with the go command
// that runs the tests, CGO_ENABLED=0 (a static binary that maps no shared
// library), offline. The test fails if the build does.
func GoTarget(tb testing.TB) string {
	tb.Helper()
	return Copy(tb, goBuild(tb, Source("gotarget")))
}

func goBuild(tb testing.TB, srcDir string) string {
	tb.Helper()
	return cached(tb, "go:"+srcDir, func(dir string) (string, error) {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		out := filepath.Join(dir, filepath.Base(srcDir))
		cmd := exec.Command(goBin, "build", "-o", out, ".")
		cmd.Dir = srcDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod", "GOPROXY=off", "GOTOOLCHAIN=local")
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build in %s: %v\n%s", srcDir, err, b)
		}
		return out, nil
	})
}

// GoRec returns a private copy of the Go recursion fixture
// (testdata/gorec: goroutines whose deep recursion grows their stacks).
func GoRec(tb testing.TB) string {
	tb.Helper()
	return Copy(tb, goBuild(tb, Source("gorec")))
}
