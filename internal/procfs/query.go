package procfs

import (
	"errors"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PROCMAP_QUERY (Linux >= 6.11): an ioctl on an open /proc/PID/maps that
// describes the mapping covering an address, without formatting the maps
// text (include/uapi/linux/fs.h).

// procmapQuery is struct procmap_query.
type procmapQuery struct {
	Size        uint64
	QueryFlags  uint64
	QueryAddr   uint64
	VMAStart    uint64
	VMAEnd      uint64
	VMAFlags    uint64
	VMAPageSize uint64
	VMAOffset   uint64
	Inode       uint64
	DevMajor    uint32
	DevMinor    uint32
	VMANameSize uint32
	BuildIDSize uint32
	VMANameAddr uint64
	BuildIDAddr uint64
}

const (
	procmapQueryIoctl = 3<<30 | uint32(unsafe.Sizeof(procmapQuery{}))<<16 | 'f'<<8 | 17 // _IOWR('f', 17, struct procmap_query)

	queryVMAExecutable  = 0x04
	queryCoveringOrNext = 0x10
	queryFileBacked     = 0x20
)

// ErrNoQuery is returned by Maps.Query where the kernel has no
// PROCMAP_QUERY (before Linux 6.11): use ReadMaps.
var ErrNoQuery = errors.New("PROCMAP_QUERY not supported")

// MapsFile is an open /proc/PID/maps, for Query. It keeps referring to the
// address space of the process it was opened for (after an exec, its
// queries fail with ESRCH). Safe for concurrent use.
type MapsFile struct {
	fd int
}

// OpenMaps opens /proc/PID/maps.
func OpenMaps(pid int) (*MapsFile, error) {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/maps", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/proc/" + strconv.Itoa(pid) + "/maps", Err: err}
	}
	return &MapsFile{fd: fd}, nil
}

// Close closes the file.
func (f *MapsFile) Close() error { return unix.Close(f.fd) }

// Query returns the mapping covering addr (Mapping.Perms has only the x
// bit right: "--x-" or "----"; Path is empty), or an error: ENOENT-wrapped
// when nothing covers addr, ESRCH when the address space is gone,
// ErrNoQuery without kernel support.
func (f *MapsFile) Query(addr uint64) (Mapping, error) {
	return f.query(addr, 0)
}

func (f *MapsFile) query(addr, flags uint64) (Mapping, error) {
	q := procmapQuery{Size: uint64(unsafe.Sizeof(procmapQuery{})), QueryAddr: addr, QueryFlags: flags}
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(f.fd), uintptr(procmapQueryIoctl), uintptr(unsafe.Pointer(&q)))
	switch e {
	case 0:
	case unix.ENOTTY, unix.EINVAL:
		return Mapping{}, ErrNoQuery
	case unix.ENOENT:
		return Mapping{}, syscall.ENOENT
	default:
		return Mapping{}, e
	}
	m := Mapping{Start: q.VMAStart, End: q.VMAEnd, Off: q.VMAOffset, Ino: q.Inode,
		Dev: unix.Mkdev(q.DevMajor, q.DevMinor), Perms: "----"}
	if q.VMAFlags&queryVMAExecutable != 0 {
		m.Perms = "--x-"
	}
	return m, nil
}

// QueryNext returns the first file-backed mapping at or above addr (only
// executable ones if execOnly), as Query does; ENOENT-wrapped past the
// last.
func (f *MapsFile) QueryNext(addr uint64, execOnly bool) (Mapping, error) {
	flags := uint64(queryCoveringOrNext | queryFileBacked)
	if execOnly {
		flags |= queryVMAExecutable
	}
	return f.query(addr, flags)
}

// noQuery is set once a PROCMAP_QUERY failed with ErrNoQuery.
var noQuery atomic.Bool

// queryMaps reports whether pid maps any of keys, asked by PROCMAP_QUERY
// (its file-backed mappings, one ioctl each). ok is false where the kernel
// cannot answer (then read the maps); a process that is gone maps nothing.
func queryMaps(pid int, keys []FileID) (maps, ok bool) {
	if noQuery.Load() {
		return false, false
	}
	f, err := OpenMaps(pid)
	if err != nil {
		return false, true
	}
	defer f.Close()
	for addr := uint64(0); ; {
		m, err := f.QueryNext(addr, false)
		if errors.Is(err, ErrNoQuery) {
			noQuery.Store(true)
			return false, false
		}
		if err != nil {
			return false, true // past the last one (ENOENT), or gone
		}
		for _, k := range keys {
			if m.Dev == k.Dev && m.Ino == k.Ino {
				return true, true
			}
		}
		addr = m.End
	}
}
