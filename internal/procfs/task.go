package procfs

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Children returns the pids of the children that thread tid of process pid
// created (/proc/PID/task/TID/children).
func Children(pid, tid int) ([]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, tid))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if c, err := strconv.Atoi(f); err == nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// TaskSyscall tells what thread tid of process pid is doing
// (/proc/PID/task/TID/syscall): running (on a CPU, or about to be), or
// blocked in system call nr (nr -1: blocked, not in a system call).
func TaskSyscall(pid, tid int) (nr int, running bool, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/syscall", pid, tid))
	if err != nil {
		return 0, false, err
	}
	f := strings.Fields(string(b))
	switch {
	case len(f) == 0:
		return 0, false, fmt.Errorf("/proc/%d/task/%d/syscall: empty", pid, tid)
	case f[0] == "running":
		return 0, true, nil
	}
	nr, err = strconv.Atoi(f[0])
	if err != nil {
		return 0, false, fmt.Errorf("/proc/%d/task/%d/syscall: %q", pid, tid, f[0])
	}
	return nr, false, nil
}
