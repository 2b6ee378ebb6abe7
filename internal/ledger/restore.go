package ledger

import (
	"fmt"
	"os"

	"github.com/uprobefs/uprobefs/internal/procfs"
)

// Result is what Restore did.
type Result struct {
	Restored  int // bytes put back
	Skipped   int // entries whose byte was no longer ours (restored, exec'd, exited)
	Processes int // processes written to
	Errors    []error
}

// Restore puts back the original byte of every entry whose address still
// maps the entry's file at the entry's offset, executable, and still holds
// an int3 (0xcc): through /proc/PID/mem, which writes private text
// copy-on-write, never the file. The Tail of a jump site's entry goes back
// first (no thread runs past an int3, so none is inside it). Anything else
// is skipped: the process exited or exec'd, or the pid is another process
// now; a jump site whose jump is in place is left as it is: the process
// runs on through its trampoline, which lives as long as the process.
func Restore(entries []Entry) Result {
	var r Result
	byPid := map[int][]Entry{}
	for _, e := range entries {
		byPid[e.Pid] = append(byPid[e.Pid], e)
	}
	for pid, es := range byPid {
		n, skipped, err := restorePid(pid, es)
		r.Restored += n
		r.Skipped += skipped
		if n > 0 {
			r.Processes++
		}
		if err != nil {
			r.Errors = append(r.Errors, err)
		}
	}
	return r
}

func restorePid(pid int, es []Entry) (restored, skipped int, err error) {
	mf, err := procfs.OpenMaps(pid)
	if err != nil {
		return 0, len(es), nil // gone
	}
	defer mf.Close()
	mem, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), os.O_RDWR, 0)
	if err != nil {
		return 0, len(es), nil
	}
	defer mem.Close()
	ms, _ := procfs.ReadMaps(pid) // the fallback where there is no PROCMAP_QUERY
	for _, e := range es {
		m, ok := mappingAt(mf, ms, e.Vaddr)
		if !ok || m.Dev != e.Dev || m.Ino != e.Ino || m.Off+(e.Vaddr-m.Start) != e.Off || !m.Exec() {
			skipped++
			continue
		}
		var b [1]byte
		if _, err := mem.ReadAt(b[:], int64(e.Vaddr)); err != nil || b[0] != 0xcc {
			skipped++
			continue
		}
		if len(e.Tail) > 0 {
			if _, werr := mem.WriteAt(e.Tail, int64(e.Vaddr)+1); werr != nil {
				err = fmt.Errorf("pid %d %#x: %w", pid, e.Vaddr, werr)
				continue
			}
		}
		if _, werr := mem.WriteAt([]byte{e.Orig}, int64(e.Vaddr)); werr != nil {
			err = fmt.Errorf("pid %d %#x: %w", pid, e.Vaddr, werr)
			continue
		}
		restored++
	}
	return restored, skipped, err
}

func mappingAt(mf *procfs.MapsFile, ms []procfs.Mapping, va uint64) (procfs.Mapping, bool) {
	if m, err := mf.Query(va); err == nil {
		return m, true
	}
	for _, m := range ms {
		if va >= m.Start && va < m.End {
			return m, true
		}
	}
	return procfs.Mapping{}, false
}
