// Package testfix builds the C fixtures that tests run and probe: the one
// C fixture builder of the module.
//
// Every fixture is compiled by the test into a private directory, so that a
// probe never lands in a binary that other processes on the machine map.
// Build compiles each (source, flags) once per test binary into a cache
// directory that Main removes at the end; callers that probe a fixture take
// a private copy of it (Copy: a new inode) per test.
//
// It also holds the few helpers that tests of several packages share:
// starting a fixture over pipes (StartPiped), opening a fixture's temp dirs
// to other users (Reachable, User), a buffer for a concurrent log
// (SyncBuffer). It imports only the standard library.
package testfix

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// CC compiles the C source file src with gcc into a new file in a private
// temporary directory of tb and returns its path. flags are passed to gcc
// before the source (for example "-O2", "-no-pie", "-shared", "-fPIC").
// The test fails if gcc fails.
func CC(tb testing.TB, src string, flags ...string) string {
	tb.Helper()
	out, err := cc(tb.TempDir(), src, flags)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// CXX is CC for a C++ source, compiled and linked with g++.
func CXX(tb testing.TB, src string, flags ...string) string {
	tb.Helper()
	out, err := compile("g++", tb.TempDir(), src, flags)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func cc(dir, src string, flags []string) (string, error) { return compile("gcc", dir, src, flags) }

func compile(compiler, dir, src string, flags []string) (string, error) {
	abs, err := filepath.Abs(src)
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, strings.TrimSuffix(filepath.Base(src), filepath.Ext(src)))
	args := append(append([]string{"-g", "-o", out}, flags...), abs)
	if b, err := exec.Command(compiler, args...).CombinedOutput(); err != nil {
		return "", &buildError{compiler: compiler, args: args, err: err, out: b}
	}
	return out, nil
}

type buildError struct {
	compiler string
	args     []string
	err      error
	out      []byte
}

func (e *buildError) Error() string {
	return e.compiler + " " + strings.Join(e.args, " ") + ": " + e.err.Error() + "\n" + string(e.out)
}

var (
	cacheMu  sync.Mutex
	cacheDir string            // made on first use, removed by Main
	cache    map[string]string // src+flags -> path in cacheDir; protected by cacheMu
)

// Build compiles src with flags once per test binary and returns the path
// of the binary, shared by every test that asks: run it, or Copy it before
// probing it. Use Main in TestMain so the cache is removed.
func Build(tb testing.TB, src string, flags ...string) string {
	tb.Helper()
	abs, err := filepath.Abs(src)
	if err != nil {
		tb.Fatal(err)
	}
	key := strings.Join(append([]string{abs}, flags...), " ")
	return cached(tb, key, func(dir string) (string, error) { return cc(dir, abs, flags) })
}

// cached returns the build of key, made once per test binary by build in a
// directory of its own under the cache.
func cached(tb testing.TB, key string, build func(dir string) (string, error)) string {
	tb.Helper()
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
	dir := filepath.Join(cacheDir, strconv.Itoa(len(cache)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	p, err := build(dir)
	if err != nil {
		tb.Fatal(err)
	}
	cache[key] = p
	return p
}

// Main runs the tests of m and removes Build's cache; call it from
// TestMain: os.Exit(testfix.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	cacheMu.Lock()
	if cacheDir != "" {
		os.RemoveAll(cacheDir)
		cacheDir, cache = "", nil
	}
	cacheMu.Unlock()
	return code
}

// Source returns the path of the shared fixture source name (a file of
// internal/testfix/testdata, such as "target.c").
func Source(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", name)
}

// Target returns a private copy (in tb's temp dir) of the shared target
// fixture (testdata/target.c, built -O0 -fcf-protection=none): see its
// comment for what it does and what tests may rely on.
func Target(tb testing.TB) string {
	tb.Helper()
	return Copy(tb, Build(tb, Source("target.c"), "-O0", "-fcf-protection=none"))
}

// Glob returns a private copy (in tb's temp dir) of the wildcard and batch
// fixture (testdata/glob.c, built -O0 -fcf-protection=none): see its
// comment for its function symbols and what each mode calls.
func Glob(tb testing.TB) string {
	tb.Helper()
	return Copy(tb, Build(tb, Source("glob.c"), "-O0", "-fcf-protection=none"))
}

// Copy copies the file src to a new file in a private temporary directory of
// tb (a new inode) and returns its path; the mode is kept.
func Copy(tb testing.TB, src string) string {
	tb.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := os.Stat(src)
	if err != nil {
		tb.Fatal(err)
	}
	dst := filepath.Join(tb.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, b, st.Mode().Perm()); err != nil {
		tb.Fatal(err)
	}
	return dst
}

// SymOff returns the file offset of the symbol sym (of any type, so that
// tests can also aim at data) in the ELF file path, computed from the
// PT_LOAD segment that holds it. The test fails if there is none.
func SymOff(tb testing.TB, path, sym string) uint64 {
	tb.Helper()
	f, err := elf.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		tb.Fatal(err)
	}
	for _, s := range syms {
		if s.Name != sym {
			continue
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && s.Value >= p.Vaddr && s.Value < p.Vaddr+p.Memsz {
				return s.Value - p.Vaddr + p.Off
			}
		}
	}
	tb.Fatalf("%s: no symbol %s in a loaded segment", path, sym)
	return 0
}

// Reachable makes the directory of each file and the one above it (a
// test's temp dir and its parent, which testing makes 0700) 0755, so that
// other users, and the daemon's checks on their behalf, can reach the
// files. Both must lie below the system's temp dir (never the temp dir
// itself, whose mode stays as it is). The test fails if it cannot.
func Reachable(tb testing.TB, files ...string) {
	tb.Helper()
	tmp := filepath.Clean(os.TempDir()) + string(filepath.Separator)
	for _, f := range files {
		for _, d := range []string{filepath.Dir(f), filepath.Dir(filepath.Dir(f))} {
			if !strings.HasPrefix(d, tmp) {
				tb.Fatalf("Reachable(%s): %s is not below %s", f, d, tmp)
			}
			if err := os.Chmod(d, 0o755); err != nil {
				tb.Fatal(err)
			}
		}
	}
}
