package testfix

import (
	"bytes"
	"io"
	"os/exec"
	"sync"
	"testing"
)

// StartPiped starts cmd (a fixture the test built or copied) with a pipe to
// its stdin and one from its stdout, and returns both; the test fails if
// cmd cannot start. Its cleanup kills cmd (through its own handle, never
// another process of that pid) and reaps it, after the caller's cleanups
// registered later, which may end it more gently first.
func StartPiped(tb testing.TB, cmd *exec.Cmd) (stdin io.WriteCloser, stdout io.ReadCloser) {
	tb.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err = cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return stdin, stdout
}

// SyncBuffer is a bytes.Buffer safe for concurrent writers and readers:
// the log of a daemon or of a Manager, read by the test while it runs.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
