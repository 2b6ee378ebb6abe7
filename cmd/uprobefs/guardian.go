package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/internal/ledger"
)

// The guardian: a small process that mount starts (this binary, the
// hidden command "guardian") and that outlives the daemon. The daemon
// records every breakpoint in a ledger (internal/ledger: a memfd both
// map) before writing it. When the daemon dies without cleaning up
// (SIGKILL, the OOM killer, a crash), the guardian learns it at once
// through a pidfd, puts back every original byte through /proc/PID/mem,
// and unmounts the dead mount (which would otherwise stay "Transport
// endpoint is not connected"). After a clean shutdown it just exits.
//
// What it cannot save: a thread stopped by the tracer at that very moment
// (in a hit) is released by the kernel with the breakpoint's SIGTRAP
// pending, which kills it unless it handles SIGTRAP.

// oomScoreDaemon and oomScoreGuardian make the OOM killer prefer other
// processes (root only can lower them; other users keep theirs).
const (
	oomScoreDaemon   = "-900"
	oomScoreGuardian = "-1000"
)

// guardian is the daemon's handle on its guardian.
type guardian struct {
	led    *ledger.Ledger
	cmd    *exec.Cmd
	exited chan struct{}
}

// startGuardian creates the ledger and starts the guardian of the mount at
// mnt, in its own session (terminal signals to the daemon's group do not
// reach it). Its messages go to stderr.
func startGuardian(mnt string, stderr io.Writer) (*guardian, error) {
	abs, err := filepath.Abs(mnt)
	if err != nil {
		return nil, err
	}
	led, err := ledger.Create(ledger.DefaultSlots)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		led.Close()
		return nil, err
	}
	cmd := exec.Command(self, "guardian", "--pid", strconv.Itoa(os.Getpid()), "--mount", abs)
	cmd.ExtraFiles = []*os.File{led.File()} // fd 3
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		led.Close()
		return nil, fmt.Errorf("start the guardian: %w", err)
	}
	g := &guardian{led: led, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(g.exited) }()
	os.WriteFile("/proc/self/oom_score_adj", []byte(oomScoreDaemon), 0)
	return g, nil
}

// clean tells the guardian that every byte was restored by the daemon (or
// that nothing is mounted), ends it and waits for it: a clean exit leaves
// no process behind.
func (g *guardian) clean() {
	g.led.SetClean()
	g.cmd.Process.Signal(syscall.SIGKILL) // it has nothing to do
	select {
	case <-g.exited:
	case <-time.After(5 * time.Second):
	}
}

func cmdGuardian(args []string, stdout, stderr io.Writer) int {
	f := flag.NewFlagSet("guardian", flag.ContinueOnError)
	f.SetOutput(stderr)
	pid := f.Int("pid", 0, "the daemon's pid")
	mnt := f.String("mount", "", "the daemon's mount point")
	if err := f.Parse(args); err != nil || *pid <= 0 || *mnt == "" {
		fmt.Fprintln(stderr, "uprobefs guardian: internal command, started by mount")
		return 2
	}
	os.WriteFile("/proc/self/oom_score_adj", []byte(oomScoreGuardian), 0)
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP) // it ends with the daemon
	if err := waitDeath(*pid); err != nil {
		fmt.Fprintf(stderr, "uprobefs guardian: watching pid %d: %v\n", *pid, err)
	}
	// Mapped now, at its final size (the daemon grows it as it fills).
	led, err := ledger.Open(os.NewFile(3, "ledger"))
	if err != nil {
		fmt.Fprintf(stderr, "uprobefs guardian: %v\n", err)
		return 1
	}
	if led.Clean() {
		return 0
	}
	t0 := time.Now()
	r := ledger.Restore(led.Live())
	took := time.Since(t0)
	umount := "unmounted"
	if err := unmountDead(*mnt); err != nil {
		umount = "unmount failed: " + err.Error()
	}
	fmt.Fprintf(stderr, "uprobefs guardian: daemon pid %d died: restored %d breakpoints in %d processes (%d skipped) in %v; %s %s\n",
		*pid, r.Restored, r.Processes, r.Skipped, took.Round(time.Microsecond), umount, *mnt)
	for _, err := range r.Errors {
		fmt.Fprintf(stderr, "uprobefs guardian: %v\n", err)
	}
	if len(r.Errors) > 0 {
		return 1
	}
	return 0
}

// waitDeath returns when process pid has exited (pidfd: at once).
func waitDeath(pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil // already gone
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		_, err := unix.Poll(fds, -1)
		if err == nil && fds[0].Revents != 0 {
			return nil
		}
		if err != nil && err != unix.EINTR {
			return err
		}
	}
}

// unmountDead detaches the dead daemon's mount.
func unmountDead(mnt string) error {
	if os.Geteuid() == 0 {
		err := syscall.Unmount(mnt, syscall.MNT_DETACH)
		if err != nil && !errors.Is(err, syscall.EINVAL) { // EINVAL: not mounted (any more)
			return err
		}
		return nil
	}
	return fusermount("-uz", mnt)
}
