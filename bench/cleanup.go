package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// cleaner runs the registered cleanups, last registered first, exactly once:
// at the end of main, on a panic in main, and on SIGINT/SIGTERM/SIGHUP.
type cleaner struct {
	mu   sync.Mutex
	fns  []cleanup
	next int
}

type cleanup struct {
	id   int
	what string
	fn   func()
}

var clean cleaner

// stopping is set on a signal: nothing new is started after it.
var stopping atomic.Bool

var errStopping = errors.New("stopping on a signal")

// atExit registers fn to run at exit; the returned forget unregisters it
// without running it (call it once the resource is released).
func atExit(what string, fn func()) (forget func()) {
	clean.mu.Lock()
	defer clean.mu.Unlock()
	clean.next++
	id := clean.next
	clean.fns = append(clean.fns, cleanup{id, what, fn})
	return func() {
		clean.mu.Lock()
		defer clean.mu.Unlock()
		if i := slices.IndexFunc(clean.fns, func(c cleanup) bool { return c.id == id }); i >= 0 {
			clean.fns = slices.Delete(clean.fns, i, i+1)
		}
	}
}

// runAll runs every cleanup still registered, last first.
func (c *cleaner) runAll() {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		func() {
			defer func() {
				if r := recover(); r != nil {
					logf("cleanup %s: panic: %v", fns[i].what, r)
				}
			}()
			fns[i].fn()
		}()
	}
}

// handleSignals cleans up and exits on SIGINT, SIGTERM and SIGHUP.
func handleSignals() {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-ch
		stopping.Store(true)
		logf("bench: %v: cleaning up", s)
		go func() {
			// A second signal or a stuck cleanup must not keep us alive.
			select {
			case <-ch:
			case <-time.After(30 * time.Second):
			}
			os.Exit(131)
		}()
		clean.runAll()
		os.Exit(130)
	}()
}

var logMu sync.Mutex

func logf(format string, args ...any) {
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// child is a process this program started, in its own process group.
// Kill ends the whole group (the process and anything it forked that
// stayed in it) and reaps the process.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	done   chan struct{}
	werr   error
	mu     sync.Mutex
	stderr strings.Builder
	forget func()
}

// startChild starts name args in a new process group with stdin and stdout
// piped; stdout lines arrive on c.lines.
func startChild(name string, args ...string) (*child, error) {
	if stopping.Load() {
		return nil, errStopping
	}
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c := &child{cmd: cmd, lines: make(chan string, 64), done: make(chan struct{})}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = &lockedWriter{c: c}
	c.stdin = in
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c.forget = atExit(fmt.Sprintf("kill %s (pid %d)", name, cmd.Process.Pid), c.kill)
	go func() {
		buf := make([]byte, 0, 4096)
		tmp := make([]byte, 4096)
		for {
			n, err := out.Read(tmp)
			buf = append(buf, tmp[:n]...)
			for {
				i := strings.IndexByte(string(buf), '\n')
				if i < 0 {
					break
				}
				c.lines <- string(buf[:i])
				buf = buf[i+1:]
			}
			if err != nil {
				break
			}
		}
		c.werr = cmd.Wait()
		close(c.lines)
		close(c.done)
	}()
	return c, nil
}

type lockedWriter struct{ c *child }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	w.c.stderr.Write(p)
	if w.c.stderr.Len() > 256<<10 { // keep the last 128 KiB
		rest := w.c.stderr.String()[w.c.stderr.Len()-128<<10:]
		w.c.stderr.Reset()
		w.c.stderr.WriteString(rest)
	}
	return len(p), nil
}

func (c *child) Pid() int { return c.cmd.Process.Pid }

func (c *child) Stderr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimSpace(c.stderr.String())
}

var errTimeout = errors.New("timed out")

// line waits for the next stdout line.
func (c *child) line(d time.Duration) (string, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case l, ok := <-c.lines:
		if !ok {
			<-c.done
			return "", fmt.Errorf("%s exited (%v) before a line: %s", c.cmd.Path, c.werr, c.Stderr())
		}
		return l, nil
	case <-t.C:
		return "", fmt.Errorf("%s: no output in %v: %w", c.cmd.Path, d, errTimeout)
	}
}

// expect waits for a line equal to want.
func (c *child) expect(want string, d time.Duration) error {
	l, err := c.line(d)
	if err != nil {
		return err
	}
	if l != want {
		return fmt.Errorf("%s: got %q, want %q", c.cmd.Path, l, want)
	}
	return nil
}

// send writes one line to the child's stdin.
func (c *child) send(s string) error {
	_, err := io.WriteString(c.stdin, s+"\n")
	return err
}

// exited waits up to d for the child to exit and reports whether it did.
func (c *child) exited(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		return false
	}
}

// signal sends sig to the child unless it has exited, then waits up to d
// for it to exit; it reports whether it did.
func (c *child) signal(sig syscall.Signal, d time.Duration) bool {
	select {
	case <-c.done:
		return true
	default:
	}
	_ = c.cmd.Process.Signal(sig)
	return c.exited(d)
}

// wait waits for the child to exit, killing it after d.
func (c *child) wait(d time.Duration) error {
	if !c.exited(d) {
		c.kill()
		return fmt.Errorf("%s did not exit in %v: killed", c.cmd.Path, d)
	}
	c.forget()
	if c.werr != nil {
		return fmt.Errorf("%s: %v: %s", c.cmd.Path, c.werr, c.Stderr())
	}
	return nil
}

// kill ends the child: it closes its stdin and gives it a moment to end by
// itself (a fleet then kills and reaps the processes it forked, so that
// none is left to init), then SIGKILLs its process group and reaps it.
func (c *child) kill() {
	select {
	case <-c.done:
	default:
		c.stdin.Close()
		c.exited(2 * time.Second)
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		if !c.exited(10 * time.Second) {
			logf("bench: pid %d not reaped after SIGKILL", c.cmd.Process.Pid)
		}
	}
	c.forget()
}

// closeAndWait closes stdin (the fleet's signal to end), waits up to d.
func (c *child) closeAndWait(d time.Duration) error {
	c.stdin.Close()
	return c.wait(d)
}
