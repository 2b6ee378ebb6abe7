package proc

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mapping is one line of /proc/PID/maps.
type mapping struct {
	Start, End uint64
	Perms      string // "r-xp"
	Off        uint64 // file offset in bytes
	Dev        uint64 // unix.Mkdev(major, minor), as stat's st_dev
	Ino        uint64
	Path       string // may be "[vdso]", "" or end in " (deleted)"
}

// Exec reports whether the mapping is executable.
func (m *mapping) Exec() bool { return len(m.Perms) > 2 && m.Perms[2] == 'x' }

// parseMaps parses the text of /proc/PID/maps.
func parseMaps(b []byte) ([]mapping, error) {
	var out []mapping
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if len(line) == 0 {
			continue
		}
		m, err := parseMapsLine(string(line))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// parseMapsLine parses "start-end perms offset maj:min inode   path".
func parseMapsLine(s string) (mapping, error) {
	var m mapping
	bad := func(why string) (mapping, error) {
		return mapping{}, fmt.Errorf("maps line %q: %s", s, why)
	}
	f := strings.Fields(s)
	if len(f) < 5 {
		return bad("too few fields")
	}
	se := strings.SplitN(f[0], "-", 2)
	if len(se) != 2 {
		return bad("range")
	}
	var err error
	if m.Start, err = strconv.ParseUint(se[0], 16, 64); err != nil {
		return bad("start")
	}
	if m.End, err = strconv.ParseUint(se[1], 16, 64); err != nil || m.End < m.Start {
		return bad("end")
	}
	m.Perms = f[1]
	if len(m.Perms) != 4 {
		return bad("perms")
	}
	if m.Off, err = strconv.ParseUint(f[2], 16, 64); err != nil {
		return bad("offset")
	}
	mm := strings.SplitN(f[3], ":", 2)
	if len(mm) != 2 {
		return bad("device")
	}
	maj, err1 := strconv.ParseUint(mm[0], 16, 32)
	min, err2 := strconv.ParseUint(mm[1], 16, 32)
	if err1 != nil || err2 != nil {
		return bad("device")
	}
	m.Dev = unix.Mkdev(uint32(maj), uint32(min))
	if m.Ino, err = strconv.ParseUint(f[4], 10, 64); err != nil {
		return bad("inode")
	}
	// The path is everything after the inode field; it may hold spaces.
	rest := s
	for i := 0; i < 5; i++ {
		rest = strings.TrimLeft(rest, " ")
		j := strings.IndexByte(rest, ' ')
		if j < 0 {
			rest = ""
			break
		}
		rest = rest[j:]
	}
	m.Path = strings.TrimLeft(rest, " ")
	return m, nil
}

// readMaps reads /proc/PID/maps.
func readMaps(pid int) ([]mapping, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	return parseMaps(b)
}

// listPids returns the pids of /proc.
func listPids() ([]int, error) {
	return listNumeric("/proc")
}

// listTasks returns the tids of /proc/PID/task.
func listTasks(pid int) ([]int, error) {
	return listNumeric(fmt.Sprintf("/proc/%d/task", pid))
}

func listNumeric(dir string) ([]int, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, n := range names {
		if v, err := strconv.Atoi(n); err == nil && v > 0 {
			out = append(out, v)
		}
	}
	return out, nil
}

// procStatus holds the fields of /proc/PID/status that we use.
type procStatus struct {
	Tgid, PPid, TracerPid int
	State                 byte // 'R', 'S', 't' (traced), 'T' (stopped), 'Z'...
}

// readStatus reads /proc/PID/status (or /proc/PID/task/TID/status via path).
func readStatus(path string) (procStatus, error) {
	var st procStatus
	f, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Tgid":
			st.Tgid, _ = strconv.Atoi(v)
		case "PPid":
			st.PPid, _ = strconv.Atoi(v)
		case "TracerPid":
			st.TracerPid, _ = strconv.Atoi(v)
		case "State":
			if v != "" {
				st.State = v[0]
			}
		}
	}
	return st, sc.Err()
}

// pidStatus reads /proc/PID/status.
func pidStatus(pid int) (procStatus, error) {
	return readStatus(fmt.Sprintf("/proc/%d/status", pid))
}

// threadCPU returns the CPU a thread last ran on (field 39 of
// /proc/PID/task/TID/stat) read through the open file f with pread.
func threadCPU(f *os.File, buf []byte) (int, error) {
	n, err := f.ReadAt(buf, 0)
	if n == 0 {
		return -1, err
	}
	b := buf[:n]
	// Skip "pid (comm) ": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1, fmt.Errorf("stat: no comm")
	}
	// After ") " the fields start at field 3 (state).
	fields := bytes.Fields(b[i+1:])
	const idx = 39 - 3
	if len(fields) <= idx {
		return -1, fmt.Errorf("stat: short")
	}
	v, err := strconv.Atoi(string(fields[idx]))
	if err != nil {
		return -1, err
	}
	return v, nil
}
