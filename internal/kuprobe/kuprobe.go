// Package kuprobe adds, enables, reads and removes a kernel uprobe through
// tracefs (uprobe_events), for tests and benchmarks that compare uprobefs
// with the kernel's own uprobes on the same file and offset.
//
// The kernel's probe and ours must never be on the same file at the same
// time: run the kernel's first, remove it, then ours.
//
// Probes are created in the group "uprobes" with names chosen by the
// caller; a name must be unique on the machine while the probe exists
// (prefix it with something per test, e.g. the pid).
package kuprobe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrUnavailable is wrapped by Available and Add when the kernel's uprobes
// cannot be used (no tracefs, no uprobe_events, not permitted).
var ErrUnavailable = errors.New("kernel uprobes unavailable")

// Dir is where tracefs is (or gets) mounted.
const Dir = "/sys/kernel/tracing"

// Available reports (nil) whether kernel uprobes can be used, mounting
// tracefs at Dir if it is not mounted and we may. The error says why not.
func Available() error {
	ev := filepath.Join(Dir, "uprobe_events")
	if _, err := os.Stat(ev); err != nil {
		if os.Geteuid() == 0 {
			syscall.Mount("nodev", Dir, "tracefs", 0, "")
		}
		if _, err := os.Stat(ev); err != nil {
			return fmt.Errorf("%s: %v: %w", ev, err, ErrUnavailable)
		}
	}
	f, err := os.OpenFile(ev, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("%s: %v: %w", ev, err, ErrUnavailable)
	}
	f.Close()
	return nil
}

// Probe is a kernel uprobe on a file offset.
type Probe struct {
	Name   string // event name in the "uprobes" group
	Path   string
	Offset uint64
}

func appendLine(file, line string) error {
	f, err := os.OpenFile(filepath.Join(Dir, file), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(line + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Add creates a (disabled) uprobe named name at file offset off of path.
func Add(name, path string, off uint64) (*Probe, error) { return AddSpec("p", name, path, off, "") }

// AddReturn creates a (disabled) uretprobe named name at file offset off
// of path (a function's entry): its events are the function's returns
// (uprobe_profile counts its entries).
func AddReturn(name, path string, off uint64) (*Probe, error) {
	return AddSpec("r", name, path, off, "")
}

// AddSpec creates a (disabled) probe of kind "p" or "r" with the fetch
// arguments args (tracefs's FETCHARGS, "" for none).
func AddSpec(kind, name, path string, off uint64, args string) (*Probe, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	p := &Probe{Name: name, Path: abs, Offset: off}
	line := fmt.Sprintf("%s:uprobes/%s %s:%#x", kind, name, abs, off)
	if args != "" {
		line += " " + args
	}
	if err := appendLine("uprobe_events", line); err != nil {
		return nil, fmt.Errorf("add uprobe %s at %s:%#x: %w", name, abs, off, err)
	}
	return p, nil
}

func (p *Probe) enableFile() string { return filepath.Join(Dir, "events/uprobes", p.Name, "enable") }

// Enable arms the probe: from now on the kernel counts hits.
func (p *Probe) Enable() error {
	return os.WriteFile(p.enableFile(), []byte("1\n"), 0)
}

// Disable disarms the probe (the breakpoints leave the processes).
func (p *Probe) Disable() error {
	return os.WriteFile(p.enableFile(), []byte("0\n"), 0)
}

// Hits returns the probe's hit count from uprobe_profile.
func (p *Probe) Hits() (uint64, error) {
	b, err := os.ReadFile(filepath.Join(Dir, "uprobe_profile"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[len(f)-2] == p.Name {
			return strconv.ParseUint(f[len(f)-1], 10, 64)
		}
	}
	return 0, fmt.Errorf("uprobe %s not in uprobe_profile", p.Name)
}

// Remove disables and deletes the probe.
func (p *Probe) Remove() error {
	p.Disable()
	if err := appendLine("uprobe_events", "-:uprobes/"+p.Name); err != nil {
		return fmt.Errorf("remove uprobe %s: %w", p.Name, err)
	}
	return nil
}

// Instance is a private trace instance (instances/NAME): its own buffer,
// so a test reads only its own events.
type Instance struct {
	dir     string
	enabled []string
}

// NewInstance creates the trace instance name.
func NewInstance(name string) (*Instance, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	in := &Instance{dir: filepath.Join(Dir, "instances", name)}
	if err := os.Mkdir(in.dir, 0o755); err != nil {
		return nil, fmt.Errorf("trace instance %s: %w", name, err)
	}
	return in, nil
}

func (in *Instance) enableFile(p *Probe) string {
	return filepath.Join(in.dir, "events/uprobes", p.Name, "enable")
}

// Enable records p's events in the instance.
func (in *Instance) Enable(p *Probe) error {
	if err := os.WriteFile(in.enableFile(p), []byte("1\n"), 0); err != nil {
		return err
	}
	in.enabled = append(in.enabled, in.enableFile(p))
	return nil
}

// Disable stops recording p's events.
func (in *Instance) Disable(p *Probe) error {
	return os.WriteFile(in.enableFile(p), []byte("0\n"), 0)
}

// Trace returns the instance's trace (its events, as the kernel prints
// them).
func (in *Instance) Trace() ([]byte, error) { return os.ReadFile(filepath.Join(in.dir, "trace")) }

// Close disables what the instance records and removes it.
func (in *Instance) Close() error {
	for _, f := range in.enabled {
		os.WriteFile(f, []byte("0\n"), 0)
	}
	return os.Remove(in.dir)
}

// EventArgs returns what the last event of the probe name in trace prints
// after its "(ADDR)": its fetch arguments, each after a space; "" when
// trace holds no event of name.
func EventArgs(trace []byte, name string) string {
	var args string
	for _, l := range strings.Split(string(trace), "\n") {
		if i := strings.Index(l, " "+name+": ("); i >= 0 {
			rest := l[i:]
			args = rest[strings.Index(rest, ")")+1:]
		}
	}
	return args
}

// FieldDiffs compares the kernel's text of an event with ours field by
// field (separated by white space) and describes each field that differs,
// a missing field counting as "".
func FieldDiffs(kernel, ours string) []string {
	var diffs []string
	kf, of := strings.Fields(kernel), strings.Fields(ours)
	for i := range max(len(kf), len(of)) {
		var kv, ov string
		if i < len(kf) {
			kv = kf[i]
		}
		if i < len(of) {
			ov = of[i]
		}
		if kv != ov {
			diffs = append(diffs, fmt.Sprintf("field %d: kernel %q, uprobefs %q", i, kv, ov))
		}
	}
	return diffs
}
