package main

// uprobefs as shipped: `uprobefs mount DIR` in its own process, driven
// through the filesystem exactly as a shell would (echo > probes, cat hits,
// rmdir).

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const controlDir = ".uprobefs" // fs.ControlDir (not imported: fs may not build yet)

type fuseTracer struct {
	bin    string // the uprobefs binary
	mnt    string
	daemon *child
	forget func()
}

// startFuse mounts uprobefs at a new directory under dir.
func startFuse(bin, dir string) (*fuseTracer, error) {
	return mountFuse(bin, filepath.Join(dir, "mnt"))
}

// mountFuse runs `uprobefs mount [flags] mnt` and waits until the control
// directory appears in it; the tracer is stopped at exit if the caller
// does not stop it first.
func mountFuse(bin, mnt string, flags ...string) (*fuseTracer, error) {
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	what := strings.Join(append([]string{"uprobefs mount"}, flags...), " ")
	d, err := startChild(bin, append(append([]string{"mount"}, flags...), mnt)...)
	if err != nil {
		return nil, err
	}
	f := &fuseTracer{bin: bin, mnt: mnt, daemon: d}
	f.forget = atExit("unmount "+mnt, f.stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if st, err := os.Stat(filepath.Join(mnt, controlDir)); err == nil && st.IsDir() {
			return f, nil
		}
		select {
		case <-d.done:
			f.stop()
			return nil, fmt.Errorf("%s exited: %v: %s", what, d.werr, tail(d.Stderr(), 600))
		default:
		}
		if time.Now().After(deadline) {
			f.stop()
			return nil, fmt.Errorf("%s: %s/%s did not appear in 15s: %s", what, mnt, controlDir, tail(d.Stderr(), 600))
		}
		time.Sleep(20 * time.Millisecond) // no event for "the mount is up"; bounded above
	}
}

func (f *fuseTracer) Name() string { return "`uprobefs mount` (FUSE)" }

func (f *fuseTracer) Pid() int { return f.daemon.Pid() }

func (f *fuseTracer) dir(path string) string { return filepath.Join(f.mnt, path) }

// register is `echo NAME=LOC > MNT/PATH/probes`, or for a return probe or
// one with fetch arguments `echo 'p:NAME FUNC ARGS' > ...` (r: for
// FUNC%return) with a reader streaming its events (uprobefs fetches the
// values only while someone reads them).
func (f *fuseTracer) register(path, name, loc string) (time.Duration, error) {
	kind, fn, args := splitLoc(loc)
	if kind == "p" && args == "" {
		return f.write(path, name+"="+loc+"\n")
	}
	d, err := f.write(path, kind+":"+name+" "+fn+" "+args+"\n")
	if err == nil && args != "" {
		if ev, err := os.Open(filepath.Join(f.dir(path), name, "events")); err == nil {
			go func() { io.Copy(io.Discard, ev); ev.Close() }() // until the probe goes
		}
	}
	return d, err
}

func (f *fuseTracer) write(path, text string) (time.Duration, error) {
	t0 := time.Now()
	fd, err := os.OpenFile(filepath.Join(f.dir(path), "probes"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	_, werr := fd.WriteString(text)
	cerr := fd.Close()
	d := time.Since(t0)
	if werr != nil {
		return 0, fmt.Errorf("echo > %s/probes: %w (%s)", f.dir(path), werr, f.lastError())
	}
	return d, cerr
}

// registerMany writes every line in one write (all or nothing).
func (f *fuseTracer) registerMany(path string, names, locs []string) (time.Duration, error) {
	var b strings.Builder
	for i := range names {
		fmt.Fprintf(&b, "%s=%s\n", names[i], locs[i])
	}
	return f.write(path, b.String())
}

// unregister is `rmdir MNT/PATH/NAME`.
func (f *fuseTracer) unregister(path, name string) (time.Duration, error) {
	t0 := time.Now()
	err := syscall.Rmdir(filepath.Join(f.dir(path), name))
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("rmdir %s/%s: %w (%s)", f.dir(path), name, err, f.lastError())
	}
	return d, nil
}

func (f *fuseTracer) unregisterMany(path string, names []string) (time.Duration, error) {
	var total time.Duration
	for _, n := range names {
		d, err := f.unregister(path, n)
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
}

// list is `cat MNT/PATH/probes`: how long the read took and how many
// lines it gave.
func (f *fuseTracer) list(path string) (time.Duration, int, error) {
	t0 := time.Now()
	b, err := os.ReadFile(filepath.Join(f.dir(path), "probes"))
	d := time.Since(t0)
	if err != nil {
		return 0, 0, err
	}
	return d, strings.Count(string(b), "\n"), nil
}

// removePattern is `echo -PATTERN > MNT/PATH/probes` (removing n probes).
func (f *fuseTracer) removePattern(path, pattern string, n int) (time.Duration, error) {
	return f.write(path, "-"+pattern+"\n")
}

// hits is `cat MNT/PATH/NAME/hits`.
func (f *fuseTracer) hits(path, name string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(f.dir(path), name, "hits"))
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// lastError is the last line of the control directory's error log.
func (f *fuseTracer) lastError() string {
	for _, n := range []string{"errors", "log", "error_log"} {
		if b, err := os.ReadFile(filepath.Join(f.mnt, controlDir, n)); err == nil {
			ls := strings.Split(strings.TrimSpace(string(b)), "\n")
			return ls[len(ls)-1]
		}
	}
	return "no error log"
}

// stop sends SIGTERM (the daemon unregisters everything and unmounts),
// then SIGKILL and a lazy unmount if it does not finish in time.
func (f *fuseTracer) stop() {
	defer f.forget()
	d := f.daemon
	if !d.signal(syscall.SIGTERM, 20*time.Second) {
		logf("uprobefs mount did not exit 20s after SIGTERM: killing it")
		d.kill()
	}
	d.forget()
	if isMounted(f.mnt) {
		if err := syscall.Unmount(f.mnt, syscall.MNT_DETACH); err != nil {
			logf("umount -l %s: %v", f.mnt, err)
		}
	}
}

func isMounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		fs := strings.Fields(l)
		if len(fs) > 4 && fs[4] == dir {
			return true
		}
	}
	return false
}

// buildUprobefs builds ./cmd/uprobefs into dir.
func buildUprobefs(goCmd, dir string) (string, error) {
	if _, err := os.Stat(filepath.Join(repoRoot, "cmd", "uprobefs")); err != nil {
		return "", errors.New("cmd/uprobefs does not exist yet")
	}
	out := filepath.Join(dir, "uprobefs")
	cmd := exec.Command(goCmd, "build", "-o", out, "./cmd/uprobefs")
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/uprobefs: %v: %s", err, tail(string(b), 400))
	}
	return out, nil
}
