package manager

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/rmap"
)

// The lifecycle of a probed file: a probe belongs to an inode, not to a
// path. After "rm PATH", or a rename of another file over PATH (a package
// upgrade), the probe stays registered — processes still running the old
// file keep hitting it — but PATH no longer leads to it, so it cannot be
// removed through PATH. Such probes are reached by the inode's name,
// InodeName ("DEV:INO", as stat -c %d:%i prints it): Files lists the
// probed inodes, ApplyInode removes probes of one. Removing the last probe
// of a file unwatches it, which closes every descriptor the daemon holds
// on it, so a deleted file's space is freed once its processes are gone.

// FileState says whether the path a probe was registered through still
// names the probed file.
type FileState int

const (
	// FilePresent: the path names the file (or cannot be checked).
	FilePresent FileState = iota
	// FileGone: nothing is at the path any more (rm, or a rename away).
	FileGone
	// FileReplaced: the path names another file now (a rename over it).
	FileReplaced
)

func (s FileState) String() string {
	switch s {
	case FileGone:
		return "gone"
	case FileReplaced:
		return "replaced"
	}
	return "present"
}

// PathState reports whether path still names the file key: FileGone if
// nothing is at path (ENOENT, ENOTDIR), FileReplaced if another file is,
// FilePresent otherwise (also when path cannot be checked).
func PathState(path string, key rmap.InodeKey) FileState {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return FileGone
		}
		return FilePresent
	}
	if st.Dev != key.Dev || st.Ino != key.Ino {
		return FileReplaced
	}
	return FilePresent
}

// InodeName is the name of the inode key in listings: "DEV:INO" in
// decimal, st_dev and st_ino as stat -c %d:%i prints them.
func InodeName(key rmap.InodeKey) string {
	return strconv.FormatUint(key.Dev, 10) + ":" + strconv.FormatUint(key.Ino, 10)
}

// ParseInodeName parses an InodeName; it reports whether s is one (in its
// canonical form: no sign, no leading zeros).
func ParseInodeName(s string) (rmap.InodeKey, bool) {
	d, i, ok := strings.Cut(s, ":")
	if !ok {
		return rmap.InodeKey{}, false
	}
	dev, err1 := strconv.ParseUint(d, 10, 64)
	ino, err2 := strconv.ParseUint(i, 10, 64)
	k := rmap.InodeKey{Dev: dev, Ino: ino}
	if err1 != nil || err2 != nil || InodeName(k) != s {
		return rmap.InodeKey{}, false
	}
	return k, true
}

// ProbedFile is one file that has probes.
type ProbedFile struct {
	Key rmap.InodeKey
	// Path is the path its oldest probe was registered through, State
	// whether that path still names it (PathState).
	Path   string
	State  FileState
	Probes int
}

// Line is the file's line in the control directory's files listing (the
// path escaped by EscapeField):
//
//	DEV:INO STATE PATH
func (f ProbedFile) Line() string {
	return InodeName(f.Key) + " " + f.State.String() + " " + EscapeField(f.Path) + "\n"
}

// Files returns the files that have probes, sorted by InodeName. It stats
// each one's path (see PathState).
func (m *Manager) Files() []ProbedFile {
	m.mu.Lock()
	out := make([]ProbedFile, 0, len(m.files))
	for k, f := range m.files {
		out = append(out, ProbedFile{Key: k, Path: oldestPath(f), Probes: len(f.probes)})
	}
	m.mu.Unlock()
	for i := range out {
		out[i].State = PathState(out[i].Path, out[i].Key)
	}
	slices.SortFunc(out, func(a, b ProbedFile) int { return strings.Compare(InodeName(a.Key), InodeName(b.Key)) })
	return out
}

// oldestPath is the path of f's oldest probe. Preconditions: Manager.mu
// held; f has a probe.
func oldestPath(f *file) string {
	var old *Probe
	for _, p := range f.probes {
		if old == nil || p.ID < old.ID {
			old = p
		}
	}
	if old == nil {
		return ""
	}
	return old.Path
}

// WriteInode parses input (one write(2) into the probes file of the inode
// key in the control directory) and applies it for caller c with
// ApplyInode, logging a refusal.
func (m *Manager) WriteInode(c Caller, key rmap.InodeKey, input []byte) error {
	return m.write(c, m.inodePath(key), input, func(ops []Op) error { return m.ApplyInode(c, key, ops) })
}

// RemoveInode unregisters the probe name of the inode key for caller c
// (rmdir in the control directory), logging a refusal.
func (m *Manager) RemoveInode(c Caller, key rmap.InodeKey, name string) error {
	err := m.ApplyInode(c, key, []Op{{Remove: true, Name: name}})
	if err != nil {
		m.Refuse(c, m.inodePath(key), "rmdir "+name, err)
	}
	return err
}

// inodePath names the inode key in the error log: the path of its oldest
// probe, or its InodeName if it has none.
func (m *Manager) inodePath(key rmap.InodeKey) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.files[key]; f != nil && len(f.probes) > 0 {
		return oldestPath(f)
	}
	return InodeName(key)
}

// ApplyInode applies ops, which must all be removals, to the probes of the
// inode key, for caller c, all or nothing; no path is looked up, so it
// works on a file that was removed or renamed over. Removing the last
// probe unwatches the file, as through ApplyAs.
//
// Errors (*Error): EINVAL (no op, or an op that registers: that needs the
// file's path), ENOENT (the inode has no probes, or no probe of that
// name), EPERM (another user's probe), ESHUTDOWN (closed).
func (m *Manager) ApplyInode(c Caller, key rmap.InodeKey, ops []Op) error {
	m.applyMu.RLock()
	defer m.applyMu.RUnlock()
	defer m.lockFile(key)()
	if err := m.checkOpen(); err != nil {
		return err
	}
	if len(ops) == 0 {
		return errorf(syscall.EINVAL, "nothing to do")
	}
	for _, op := range ops {
		if !op.Remove {
			return errorf(syscall.EINVAL, "inode %s: only removals (-NAME) can be written here; register probes through the file's path", InodeName(key))
		}
	}
	m.mu.Lock()
	f := m.files[key]
	var b *batch
	if f != nil {
		b = &batch{caller: c, path: oldestPath(f), key: key, f: f, staged: maps.Clone(f.probes)}
	}
	m.mu.Unlock()
	if f == nil {
		return errorf(syscall.ENOENT, "inode %s has no probes", InodeName(key))
	}
	for _, op := range ops {
		if err := b.stageRemove(op); err != nil {
			return err
		}
	}
	m.finish(b)
	return nil
}

// GoneLine is the line status shows first for a probe whose path no longer
// names its file ("" while it does): what happened to the path and where
// the probe is reached now (the control directory's inodes/DEV:INO/NAME,
// named by the caller as control).
func (p *Probe) GoneLine(control string) string {
	var what string
	switch PathState(p.Path, p.Key) {
	case FileGone:
		what = "no longer exists"
	case FileReplaced:
		what = "names another file now"
	default:
		return ""
	}
	return fmt.Sprintf("file gone: %s %s; this probe is %s/%s/%s\n", EscapeField(p.Path), what, control, InodeName(p.Key), EscapeField(p.Name))
}
