package testfix

import (
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
	key := "go:" + srcDir
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if p, ok := cache[key]; ok {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if cacheDir == "" {
		d, err := os.MkdirTemp("", "uprobefs-fixtures-")
		if err != nil {
			tb.Fatal(err)
		}
		cacheDir, cache = d, map[string]string{}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(cacheDir, "go", filepath.Base(srcDir))
	cmd := exec.Command(goBin, "build", "-o", out, ".")
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod", "GOPROXY=off", "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build in %s: %v\n%s", srcDir, err, b)
	}
	cache[key] = out
	return out
}

// GoRec returns a private copy of the Go recursion fixture
// (testdata/gorec: goroutines whose deep recursion grows their stacks).
func GoRec(tb testing.TB) string {
	tb.Helper()
	return Copy(tb, goBuild(tb, Source("gorec")))
}
