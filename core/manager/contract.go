package manager

import (
	"errors"
	"os"
	"syscall"

	"github.com/uprobefs/uprobefs/core/rmap"
	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Checks of the documented contract that the grammar (parse.go) and the
// registration steps (apply.go) call; kept here so that each is one call at
// its place.

// checkRemoveLine refuses a removal line "-DIGITS" ("-1", "-010"): it is a
// negative offset (EINVAL, as the errno table says), never "remove the probe
// named 1" — a probe name is never all digits (allDigits). "-0x4a0" removes
// the probe named 0x4a0, the default name of the offset 0x4a0.
func checkRemoveLine(line string) error {
	if rest := line[1:]; allDigits(rest) {
		return errors.New("a negative offset (a file offset is 0 or more); a probe name is never all digits, and the default name of an offset probe is hex: remove it with -0x4a0 (or rmdir FILE/NAME)")
	}
	return nil
}

// allDigits reports whether s is a non-empty string of decimal digits: a
// decimal or octal number, which cannot be a probe name.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkNotSelf refuses to probe a file that the daemon's own process maps
// (its executable, as <mount>/proc/self/exe names it, or a library it uses):
// the daemon cannot trace itself, and a breakpoint in its own text would
// stop the tracer at its own trap.
func checkNotSelf(path string, key rmap.InodeKey) error {
	if procfs.PidMaps(os.Getpid(), procfs.FileID(key)) {
		return errorf(syscall.EDEADLK, "%s is mapped by the uprobefs daemon itself (pid %d: its own executable or a library it uses): it cannot trace itself", path, os.Getpid())
	}
	return nil
}
