package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/internal/procfs"
)

// detachWatch tells when the mount is gone from this mount namespace: after
// "umount -l" (MNT_DETACH) with files of the mount still open, the kernel
// keeps the FUSE connection until the last one closes, so the server does
// not see the unmount — an events reader would keep the daemon tracing,
// with no mount left to reach it, for as long as the reader lives.
//
// It polls /proc/self/mountinfo, which reports POLLPRI on every change of
// the mount table (and looks every second in any case): after each change it looks for a mount of the
// filesystem's device (st_dev of the mount root), so a bind mount of it
// still counts as reachable.
type detachWatch struct {
	// Detached is closed when no mount of the device is left.
	Detached chan struct{}
	mi       *os.File
	stopFd   int // eventfd: written by Stop to end the poll
	dev      string
}

// watchDetach starts watching for the end of every mount of the device dev
// (the st_dev of the mounted root). It fails if mountinfo cannot be polled
// or does not list the device now.
func watchDetach(dev uint64) (*detachWatch, error) {
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		mi.Close()
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	w := &detachWatch{
		Detached: make(chan struct{}),
		mi:       mi,
		stopFd:   efd,
		dev:      strconv.FormatUint(uint64(unix.Major(dev)), 10) + ":" + strconv.FormatUint(uint64(unix.Minor(dev)), 10),
	}
	if ok, err := w.mounted(); err != nil || !ok {
		w.close()
		if err == nil {
			err = fmt.Errorf("device %s is not in /proc/self/mountinfo", w.dev)
		}
		return nil, err
	}
	go w.run()
	return w, nil
}

// mounted reports whether mountinfo lists a mount of w.dev (field 3,
// "MAJOR:MINOR").
func (w *detachWatch) mounted() (bool, error) {
	if _, err := w.mi.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	b, err := io.ReadAll(w.mi)
	if err != nil {
		return false, err
	}
	for line := range procfs.Lines(b) {
		f := bytes.Fields(line)
		if len(f) > 2 && string(f[2]) == w.dev {
			return true, nil
		}
	}
	return false, nil
}

func (w *detachWatch) run() {
	defer w.close()
	fds := []unix.PollFd{
		{Fd: int32(w.mi.Fd()), Events: unix.POLLPRI},
		{Fd: int32(w.stopFd), Events: unix.POLLIN},
	}
	for {
		// Woken by every change of the mount table; and, as a safety
		// net (under load a change was seen to go unnoticed, leaving
		// the daemon tracing after umount -l), every second anyway.
		n, err := unix.Poll(fds, 1000)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || fds[1].Revents != 0 {
			return
		}
		if n > 0 && fds[0].Revents&(unix.POLLPRI|unix.POLLERR) == 0 {
			continue
		}
		if ok, err := w.mounted(); err == nil && !ok {
			close(w.Detached)
			return
		}
	}
}

// Stop ends the watch (Detached is then never closed).
func (w *detachWatch) Stop() {
	var one = [8]byte{1}
	unix.Write(w.stopFd, one[:])
}

func (w *detachWatch) close() {
	w.mi.Close()
	// stopFd stays open until the process exits: Stop may still write it.
}
