package procfs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"iter"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      string // "r-xp"
	Off        uint64 // file offset in bytes
	Dev        uint64 // unix.Mkdev(major, minor), as stat's st_dev
	Ino        uint64
	Path       string // may be "[vdso]", "" or end in " (deleted)"
}

// Exec reports whether the mapping is executable.
func (m *Mapping) Exec() bool { return len(m.Perms) > 2 && m.Perms[2] == 'x' }

// Vaddr returns the address at which m maps the file offset off, and
// whether m maps it at all.
func (m *Mapping) Vaddr(off uint64) (uint64, bool) {
	if off < m.Off || off-m.Off >= m.End-m.Start {
		return 0, false
	}
	return m.Start + (off - m.Off), true
}

// MapFile is the path, in /proc/PID/map_files, of the file that the
// mapping m of process pid maps: it opens that very file (also when its
// path is gone or leads elsewhere now).
func MapFile(pid int, m *Mapping) string {
	return fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, m.Start, m.End)
}

// Lines yields the lines of b without their '\n' (a last line may lack
// one), as the /proc text files are read line by line.
func Lines(b []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for line := range bytes.Lines(b) {
			if !yield(bytes.TrimSuffix(line, []byte{'\n'})) {
				return
			}
		}
	}
}

// ParseMaps parses the text of /proc/PID/maps.
func ParseMaps(b []byte) ([]Mapping, error) {
	var out []Mapping
	for line := range Lines(b) {
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
func parseMapsLine(s string) (Mapping, error) {
	var m Mapping
	bad := func(why string) (Mapping, error) {
		return Mapping{}, fmt.Errorf("maps line %q: %s", s, why)
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

// ReadMaps reads and parses /proc/PID/maps.
func ReadMaps(pid int) ([]Mapping, error) {
	bp := GetBuf()
	defer PutBuf(bp)
	b, err := ReadFile(fmt.Sprintf("/proc/%d/maps", pid), bp)
	if err != nil {
		return nil, err
	}
	return ParseMaps(b)
}

// procBufs are buffers for readProcFile (parseMaps and the status parser
// copy what they keep).
var procBufs = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

func GetBuf() *[]byte { return procBufs.Get().(*[]byte) }
func PutBuf(b *[]byte) {
	if cap(*b) <= 1<<20 { // a huge maps file's buffer is not kept
		procBufs.Put(b)
	}
}

// readProcFile reads a whole /proc file into *bp (grown as needed) with
// plain open/read/close system calls: os.ReadFile also stats the file and
// registers it with the runtime's poller (several system calls more per
// file, which dominated the /proc scans). Errors are *os.PathError.
func ReadFile(path string, bp *[]byte) ([]byte, error) {
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	b := (*bp)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			*bp = b
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			break
		}
		b = b[:len(b)+n]
	}
	*bp = b
	return b, nil
}

// ListPids returns the pids of /proc.
func ListPids() ([]int, error) {
	return listNumeric("/proc")
}

// ListTasks returns the tids of /proc/PID/task.
func ListTasks(pid int) ([]int, error) {
	return listNumeric(fmt.Sprintf("/proc/%d/task", pid))
}

func listNumeric(dir string) ([]int, error) {
	// Plain open/getdents/close: os.Open also registers the descriptor
	// with the runtime's poller (listTasks runs once per attach).
	var fd int
	var err error
	for {
		fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	bp := GetBuf()
	defer PutBuf(bp)
	buf := (*bp)[:cap(*bp)]
	var out []int
	var names []string
	for {
		n, err := unix.ReadDirent(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "readdirent", Path: dir, Err: err}
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names[:0])
		for _, n := range names {
			if v, err := strconv.Atoi(n); err == nil && v > 0 {
				out = append(out, v)
			}
		}
	}
	return out, nil
}

// Status holds the fields of /proc/PID/status (or of one thread's
// /proc/PID/task/TID/status) that uprobefs uses.
type Status struct {
	Name                  string // the command name (comm), unescaped as the kernel prints it
	Tgid, PPid, TracerPid int
	State                 byte // 'R', 'S', 't' (traced), 'T' (stopped), 'Z'...
	// Uids and Gids are real, effective, saved set and filesystem ids.
	Uids, Gids [4]uint32
	// HasIDs reports that the Uid and Gid lines were present.
	HasIDs bool
	// SigPnd (this thread), ShdPnd (the process), SigBlk (this thread's
	// mask), SigIgn and SigCgt (the process's ignored and caught signals):
	// bit n-1 is signal n.
	SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt uint64
	// ThreadFeatures is the x86_Thread_features line ("shstk wrss"...),
	// empty where the kernel does not print it.
	ThreadFeatures string
}

// AllUids reports whether every uid of s (real, effective, saved, fs) is uid.
func (s *Status) AllUids(uid uint32) bool {
	if !s.HasIDs {
		return false
	}
	for _, u := range s.Uids {
		if u != uid {
			return false
		}
	}
	return true
}

// ShadowStack reports whether the thread runs with a user shadow stack
// (CET: "shstk" in x86_Thread_features).
func (s *Status) ShadowStack() bool {
	for _, f := range strings.Fields(s.ThreadFeatures) {
		if f == "shstk" {
			return true
		}
	}
	return false
}

// ReadStatus reads and parses a status file: /proc/PID/status or
// /proc/PID/task/TID/status.
func ReadStatus(path string) (Status, error) {
	bp := GetBuf()
	defer PutBuf(bp)
	b, err := ReadFile(path, bp)
	if err != nil {
		return Status{}, err
	}
	return ParseStatus(b), nil
}

// ParseStatus parses the text of a status file; unknown and malformed
// lines are ignored.
func ParseStatus(b []byte) Status {
	var st Status
	var uids, gids bool
	for line := range Lines(b) {
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			continue
		}
		v := string(bytes.TrimSpace(line[i+1:]))
		switch string(line[:i]) {
		case "Name":
			st.Name = v
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
		case "Uid":
			uids = parseIDs(v, &st.Uids)
		case "Gid":
			gids = parseIDs(v, &st.Gids)
		case "SigPnd":
			st.SigPnd, _ = strconv.ParseUint(v, 16, 64)
		case "ShdPnd":
			st.ShdPnd, _ = strconv.ParseUint(v, 16, 64)
		case "SigBlk":
			st.SigBlk, _ = strconv.ParseUint(v, 16, 64)
		case "SigIgn":
			st.SigIgn, _ = strconv.ParseUint(v, 16, 64)
		case "SigCgt":
			st.SigCgt, _ = strconv.ParseUint(v, 16, 64)
		case "x86_Thread_features":
			st.ThreadFeatures = v
		}
	}
	st.HasIDs = uids && gids
	return st
}

// parseIDs parses the four ids of a Uid or Gid line.
func parseIDs(v string, ids *[4]uint32) bool {
	f := strings.Fields(v)
	if len(f) != 4 {
		return false
	}
	for i, s := range f {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return false
		}
		ids[i] = uint32(n)
	}
	return true
}

// PidStatus reads /proc/PID/status.
func PidStatus(pid int) (Status, error) {
	return ReadStatus("/proc/" + strconv.Itoa(pid) + "/status")
}

// TaskStatus reads /proc/PID/task/TID/status (a thread's own mask and
// pending signals).
func TaskStatus(pid, tid int) (Status, error) {
	return ReadStatus("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid) + "/status")
}

// ThreadCPU returns the CPU a thread last ran on (field 39 of
// /proc/PID/task/TID/stat) read through the open file f with pread.
func ThreadCPU(f *os.File, buf []byte) (int, error) {
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

// FileID identifies a mapped file as /proc/PID/maps shows it: st_dev (as
// unix.Mkdev(major, minor)) and st_ino. rmap.InodeKey converts to it.
type FileID struct{ Dev, Ino uint64 }

// MapsHas reports whether the maps text b maps the file id.
func MapsHas(b []byte, id FileID) bool {
	if needleOK() && !bytes.Contains(b, mapsNeedle(id)) {
		return false
	}
	ms, err := ParseMaps(b)
	if err != nil {
		return false
	}
	for i := range ms {
		if ms[i].Dev == id.Dev && ms[i].Ino == id.Ino {
			return true
		}
	}
	return false
}

// PidMaps reports whether the process pid maps the file id (false if it
// is gone).
func PidMaps(pid int, id FileID) bool {
	bp := GetBuf()
	defer PutBuf(bp)
	b, err := ReadFile("/proc/"+strconv.Itoa(pid)+"/maps", bp)
	return err == nil && MapsHas(b, id)
}

// scanWorkers is how many goroutines read /proc/PID/maps in a scan.
const scanWorkers = 4

// mapsNeedle is what a maps line of k holds: " MAJ:MIN INODE " (the
// kernel's show_vma_header_prefix prints the device as %02x:%02x and the
// inode in decimal, each field followed by a space).
func mapsNeedle(k FileID) []byte {
	return fmt.Appendf(nil, " %02x:%02x %d ", unix.Major(k.Dev), unix.Minor(k.Dev), k.Ino)
}

// needleOK says whether the byte filter of scanMaps finds the mappings it
// should: checked once against our own maps, so that an unexpected maps
// format makes the scan parse everything instead of missing processes.
var needleOK = sync.OnceValue(func() bool {
	bp := GetBuf()
	defer PutBuf(bp)
	b, err := ReadFile("/proc/self/maps", bp)
	if err != nil {
		return false
	}
	ms, err := ParseMaps(b)
	if err != nil {
		return false
	}
	for i := range ms {
		if ms[i].Ino != 0 {
			return bytes.Contains(b, mapsNeedle(FileID{Dev: ms[i].Dev, Ino: ms[i].Ino}))
		}
	}
	return false
})

// PidsMapping returns the pids of /proc (but ours, init's and those in
// skip) whose maps map any of keys, in /proc's order. The maps files are
// read by a few goroutines at once; only those that contain a key's
// " MAJ:MIN INODE " are parsed, to confirm.
func PidsMapping(keys []FileID, skip map[int]bool) ([]int, error) {
	pids, _, err := PidsMappingMaps(keys, skip)
	return pids, err
}

// PidsMappingMaps is PidsMapping that also returns the maps each of the
// pids had when it was read, by pid. Where the kernel has PROCMAP_QUERY,
// each process is first asked for its file-backed mappings (no text is
// formatted: half the cost of reading the maps); only those that map a key
// have their maps read.
func PidsMappingMaps(keys []FileID, skip map[int]bool) ([]int, map[int][]Mapping, error) {
	pids, err := ListPids()
	if err != nil {
		return nil, nil, err
	}
	self := os.Getpid()
	needles := make([][]byte, len(keys))
	for i, k := range keys {
		needles[i] = mapsNeedle(k)
	}
	filter := needleOK()
	match := make([][]Mapping, len(pids))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(scanWorkers, len(pids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bp := GetBuf()
			defer PutBuf(bp)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(pids) {
					return
				}
				pid := pids[i]
				if pid == self || pid == 1 || skip[pid] {
					continue
				}
				if maps, ok := queryMaps(pid, keys); ok && !maps {
					continue // asked without formatting the maps text
				}
				b, err := ReadFile(fmt.Sprintf("/proc/%d/maps", pid), bp)
				if err != nil {
					continue // gone, or a kernel thread
				}
				if filter {
					hit := false
					for _, n := range needles {
						if bytes.Contains(b, n) {
							hit = true
							break
						}
					}
					if !hit {
						continue
					}
				}
				ms, err := ParseMaps(b)
				if err != nil {
					continue
				}
			scan:
				for j := range ms {
					for _, k := range keys {
						if ms[j].Dev == k.Dev && ms[j].Ino == k.Ino {
							match[i] = ms
							break scan
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	var out []int
	maps := map[int][]Mapping{}
	for i, ms := range match {
		if ms != nil {
			out = append(out, pids[i])
			maps[pids[i]] = ms
		}
	}
	return out, maps, nil
}

// Auxiliary vector keys (<elf.h>).
const (
	AtBase   = 7  // AT_BASE: the interpreter's load address
	AtHwcap2 = 26 // AT_HWCAP2: bit 1 is FSGSBASE
)

// Auxv returns the value of key in the auxiliary vector of pid, and
// whether it is there.
func Auxv(pid int, key uint64) (uint64, bool) {
	bp := GetBuf()
	defer PutBuf(bp)
	b, err := ReadFile("/proc/"+strconv.Itoa(pid)+"/auxv", bp)
	if err != nil {
		return 0, false
	}
	for len(b) >= 16 {
		k := binary.LittleEndian.Uint64(b)
		v := binary.LittleEndian.Uint64(b[8:])
		if k == 0 {
			break
		}
		if k == key {
			return v, true
		}
		b = b[16:]
	}
	return 0, false
}
