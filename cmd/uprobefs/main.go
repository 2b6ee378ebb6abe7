// Command uprobefs mounts the uprobefs filesystem: user-space uprobes for
// Linux x86-64, driven from the shell.
//
//	uprobefs mount [--allow-other] [--trap] [--debug] MOUNTPOINT
//	uprobefs umount MOUNTPOINT
//	uprobefs help [COMMAND]
//
// mount runs in the foreground until SIGINT, SIGTERM or an unmount of
// MOUNTPOINT (also a lazy one, umount -l, while files are open); then it unregisters every probe, restores and detaches every
// traced process, unmounts, and exits 0. See README.md for the filesystem.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/uprobefs/uprobefs/core/manager"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/proc"
	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/fs"
)

const usage = `uprobefs — Linux x86-64 user-space probes through a FUSE filesystem

Usage:
  uprobefs mount [--allow-other] [--trap] [--debug] [--fuse-debug] MOUNTPOINT
  uprobefs umount MOUNTPOINT
  uprobefs help [COMMAND]

Commands:
  mount    mount the filesystem at MOUNTPOINT and serve it in the foreground
  umount   unmount MOUNTPOINT (the mount command then shuts down cleanly)
  help     show this help, or a command's

Run "uprobefs COMMAND --help" for a command's options. Quick start:

  uprobefs mount /mnt/uprobes &
  echo main > /mnt/uprobes/path/to/program/probes
  cat /mnt/uprobes/path/to/program/main/hits
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command line; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "mount":
		return cmdMount(rest, stdout, stderr)
	case "umount", "unmount":
		return cmdUmount(rest, stdout, stderr)
	case "guardian": // hidden: started by mount (guardian.go)
		return cmdGuardian(rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && rest[0] != "help" {
			return run([]string{rest[0], "--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "uprobefs: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// newFlagSet returns a flag set whose --help prints synopsis and options to
// stdout.
func newFlagSet(name, synopsis, help string, stdout, stderr io.Writer) *flag.FlagSet {
	f := flag.NewFlagSet(name, flag.ContinueOnError)
	f.SetOutput(stderr)
	f.Usage = func() {
		out := f.Output()
		fmt.Fprintf(out, "Usage: uprobefs %s %s\n\n%s\n", name, synopsis, help)
		var n int
		f.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(out, "\nOptions:")
			f.PrintDefaults()
		}
	}
	return f
}

// parse parses args; it returns the exit status to return and false when
// the command must not go on (--help: 0; bad usage: 2).
func parse(f *flag.FlagSet, args []string, stdout io.Writer, nargs int) (int, bool) {
	if err := f.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			f.SetOutput(stdout)
			f.Usage()
			return 0, false
		}
		return 2, false
	}
	if f.NArg() != nargs {
		fmt.Fprintf(f.Output(), "uprobefs %s: want %d argument(s), got %d\n\n", f.Name(), nargs, f.NArg())
		f.Usage()
		return 2, false
	}
	return 0, true
}

const mountHelp = `Mounts uprobefs at MOUNTPOINT (an existing directory) and serves it in the
foreground. The mount mirrors /; a regular file appears as a directory whose
"probes" file registers probes (echo SYMBOL > MOUNTPOINT/path/to/file/probes)
and whose NAME/hits, NAME/events and NAME/status show them. The control
directory MOUNTPOINT/.uprobefs lists every probe, statistics and refused
requests.

SIGINT, SIGTERM or "umount MOUNTPOINT" (also "umount -l") end it cleanly: every probe is
unregistered, every traced process restored and detached (left running),
the filesystem unmounted; then the exit status is 0.

As root it mounts with mount(2) directly; as another user it needs
fusermount3 (or fusermount) installed, and can trace only its own processes.
Logs go to stderr.`

func cmdMount(args []string, stdout, stderr io.Writer) int {
	f := newFlagSet("mount", "[--allow-other] [--trap] [--debug] [--fuse-debug] MOUNTPOINT", mountHelp, stdout, stderr)
	allowOther := f.Bool("allow-other", false, "let other users use the mount; a non-root caller may then probe only\nfiles that every process mapping them runs as that caller, and sees only\nits own processes' events")
	trap := f.Bool("trap", false, "never replace a breakpoint by a jump site: every hit stops the process\n(for comparisons, and as an escape hatch)")
	debug := f.Bool("debug", false, "log debug messages (each registration, the tracer's diagnostics)")
	fuseDebug := f.Bool("fuse-debug", false, "log every FUSE request (very verbose)")
	if code, ok := parse(f, args, stdout, 1); !ok {
		return code
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	mnt := f.Arg(0)

	if err := checkMount(mnt); err != nil {
		log.Error("cannot mount", "mountpoint", mnt, "err", err)
		return 1
	}

	g, err := startGuardian(mnt, stderr)
	if err != nil {
		log.Error("cannot start the guardian", "err", err)
		return 1
	}
	mounted := false
	defer func() {
		if !mounted {
			g.clean() // nothing of ours at mnt: the guardian must not unmount it
		}
	}()
	eng := probes.NewEngine(proc.EngineOptions())
	inodes := &rmap.Inodes{}
	world, err := proc.NewWorld(eng, inodes, proc.Options{
		Log:    func(format string, args ...any) { log.Debug("tracer: " + fmt.Sprintf(format, args...)) },
		Ledger: g.led,
		NoJump: *trap,
	})
	if err != nil {
		log.Error("cannot start the tracer", "err", err)
		return 1
	}
	m := manager.NewManager(eng, inodes, world, log)
	srv, err := fs.Mount(m, mnt, fs.MountOptions{
		Options:    fs.Options{Log: log},
		AllowOther: *allowOther,
		Debug:      *fuseDebug,
	})
	if err != nil {
		log.Error("cannot mount", "mountpoint", mnt, "err", err)
		m.Close()
		return 1
	}
	mounted = true
	log.Info("mounted", "mountpoint", mnt, "allow_other", *allowOther, "pid", os.Getpid(), "guardian", g.cmd.Process.Pid)
	var detached <-chan struct{}
	var st syscall.Stat_t
	err = syscall.Stat(mnt, &st)
	if err == nil {
		var w *detachWatch
		if w, err = watchDetach(st.Dev); err == nil {
			defer w.Stop()
			detached = w.Detached
		}
	}
	if err != nil {
		log.Warn("cannot watch the mount table: a lazy unmount (umount -l) with open files will not end uprobefs", "err", err)
	}
	status := serve(srv, m, mnt, detached, log)
	if status == 0 && g.led.Len() == 0 {
		g.clean()
	}
	return status
}

// checkMount reports what would make mounting at mnt fail, with a hint.
func checkMount(mnt string) error {
	st, err := os.Stat(mnt)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", mnt)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("/dev/fuse: %w (load the fuse module: modprobe fuse)", err)
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			if _, err := exec.LookPath("fusermount"); err != nil {
				return errors.New("mounting as a non-root user needs fusermount3 (Debian/Ubuntu: apt install fuse3), or run uprobefs as root")
			}
		}
	}
	return nil
}

// The real world limits probes to processes (pid=, comm=).
var _ manager.WorldFilterer = (*proc.World)(nil)

// serve waits for a signal, an unmount or the detach of the mount (closed
// detached: "umount -l" while files of the mount are open), then shuts down:
// unregister every probe and restore every process first (the important
// part), then unmount.
func serve(srv *fuse.Server, m *manager.Manager, mnt string, detached <-chan struct{}, log *slog.Logger) int {
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigc)
	served := make(chan struct{})
	go func() {
		srv.Wait()
		close(served)
	}()

	status := 0
	select {
	case sig := <-sigc:
		log.Info("shutting down", "signal", sig.String())
		go func() {
			for sig := range sigc {
				log.Warn("already shutting down", "signal", sig.String())
			}
		}()
		if err := m.Close(); err != nil {
			log.Error("shutdown: restoring processes", "err", err)
			status = 1
		}
		if err := unmount(srv, mnt, served, log); err != nil {
			log.Error("shutdown: unmount", "err", err)
			status = 1
		}
	case <-detached:
		// As on SIGTERM, but the mount point is no longer ours: never
		// unmount it (another filesystem may be mounted there now). The
		// readers get end of file; when the last file of the detached
		// mount closes, the kernel ends the connection.
		log.Info("mount detached (umount -l); shutting down", "mountpoint", mnt)
		if err := m.Close(); err != nil {
			log.Error("shutdown: restoring processes", "err", err)
			status = 1
		}
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			log.Warn("files of the detached mount are still open; exiting ends the connection (their next access fails with ENOTCONN)")
		}
	case <-served:
		log.Info("unmounted; shutting down", "mountpoint", mnt)
		if err := m.Close(); err != nil {
			log.Error("shutdown: restoring processes", "err", err)
			status = 1
		}
	}
	if status == 0 {
		log.Info("clean shutdown: every probe unregistered, every process restored and detached")
	}
	return status
}

// unmount unmounts the filesystem; if it is busy (open files), it detaches it
// lazily (MNT_DETACH): the kernel finishes the unmount when the last file
// closes, and our exit ends the connection.
func unmount(srv *fuse.Server, mnt string, served <-chan struct{}, log *slog.Logger) error {
	done := make(chan error, 1)
	go func() { done <- srv.Unmount() }()
	select {
	case err := <-done:
		if err == nil {
			return nil
		}
		log.Warn("unmount failed; detaching lazily", "err", err)
	case <-time.After(5 * time.Second):
		log.Warn("unmount is slow; detaching lazily")
	}
	if os.Geteuid() == 0 {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("umount -l %s: %w", mnt, err)
		}
	} else if err := fusermount("-uz", mnt); err != nil {
		return err
	}
	select {
	case <-served:
	case <-time.After(2 * time.Second):
		// Files are still open somewhere: exiting closes /dev/fuse, which
		// ends the connection (their next access fails with ENOTCONN).
	}
	return nil
}

func fusermount(flags, mnt string) error {
	bin, err := exec.LookPath("fusermount3")
	if err != nil {
		if bin, err = exec.LookPath("fusermount"); err != nil {
			return errors.New("unmounting as a non-root user needs fusermount3 (apt install fuse3)")
		}
	}
	if out, err := exec.Command(bin, flags, mnt).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s %s: %v: %s", bin, flags, mnt, err, out)
	}
	return nil
}

const umountHelp = `Unmounts the uprobefs at MOUNTPOINT. The "uprobefs mount" serving it then
unregisters every probe, restores every process and exits 0. Fails with
"device or resource busy" while files of the mount are open (as umount does).`

func cmdUmount(args []string, stdout, stderr io.Writer) int {
	f := newFlagSet("umount", "MOUNTPOINT", umountHelp, stdout, stderr)
	if code, ok := parse(f, args, stdout, 1); !ok {
		return code
	}
	mnt, err := filepath.Abs(f.Arg(0))
	if err == nil {
		if os.Geteuid() == 0 {
			err = syscall.Unmount(mnt, 0)
		} else {
			err = fusermount("-u", mnt)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "uprobefs umount: %s: %v\n", f.Arg(0), err)
		return 1
	}
	return 0
}
