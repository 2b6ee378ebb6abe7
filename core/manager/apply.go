package manager

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/core/fetch"
	"github.com/uprobefs/uprobefs/core/objfile"
	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
)

// The steps of ApplyAs, in order: stage (parse every op against the file
// and the probes as they will be), checkLimits, checkTrace (perm.go), watch
// (the world finds the file's processes), register (with rollback),
// then finish: unregisterRemoved, commit (publish the new set of probes),
// logApplied.

// batch is one ApplyAs in progress.
type batch struct {
	caller Caller
	path   string
	key    rmap.InodeKey
	st     *unix.Stat_t
	// f is the file's probes: the published one, or a new one that commit
	// publishes.
	f *file
	// staged is the file's probes by name as they will be after the batch.
	staged map[string]*Probe
	// reserved is the room the batch took under the probe limit
	// (filelock.go), until its commit.
	reserved int
	adds     []*Probe
	removes  []*Probe
	// file is the probed file, opened once (openRegular); elf reads it,
	// from the first add on, and watchPath names it through this process's
	// descriptor.
	file *os.File
	elf  *objfile.File
	// watchedNow: watch started watching the file (rollback unwatches).
	watchedNow bool
	// left is the functions that patterns matched but left out, with the
	// reason (glob.go).
	left []string
	// filter is the process filter of the file's probes after the batch;
	// filterFixed: it is the published probes' one (filter.go).
	filter                 *Filter
	filterSet, filterFixed bool
}

func (b *batch) close() {
	switch {
	case b.elf != nil:
		b.elf.Close() // closes file
	case b.file != nil:
		b.file.Close()
	}
}

// watchPath names the probed file for the world: this process's descriptor
// of it, so the mark goes on the inode that was analysed.
func (b *batch) watchPath() string { return fmt.Sprintf("/proc/self/fd/%d", b.file.Fd()) }

// stage checks every op, in order, against the probes of the file as the
// earlier ops leave them: the location resolves and its instruction can be
// probed, names are free, removals name probes the caller owns.
// fd, key and st are the file opened at path (openRegular), owned by the
// batch from now on. Preconditions: the file's lock held (filelock.go).
func (m *Manager) stage(c Caller, path string, ops []Op, fd *os.File, key rmap.InodeKey, st *unix.Stat_t) (*batch, error) {
	b := &batch{caller: c, path: path, key: key, st: st, file: fd, staged: map[string]*Probe{}}
	var err error
	m.mu.Lock()
	b.f = m.files[key]
	if b.f != nil {
		maps.Copy(b.staged, b.f.probes)
	}
	m.mu.Unlock()
	if b.f == nil {
		b.f = &file{key: key, in: m.inodes.Get(key), probes: map[string]*Probe{}}
	}
	for _, op := range ops {
		if err = b.stageOp(op); err != nil {
			b.close()
			return nil, err
		}
	}
	return b, nil
}

func (b *batch) stageRemove(op Op) error {
	p := b.staged[op.Name]
	if p == nil {
		return errorf(syscall.ENOENT, "no probe %q on %s", op.Name, b.path)
	}
	if b.caller.Uid != 0 && p.Owner != b.caller.Uid {
		return errorf(syscall.EPERM, "probe %q on %s belongs to uid %d", op.Name, b.path, p.Owner)
	}
	delete(b.staged, op.Name)
	if p.consumer != nil {
		b.removes = append(b.removes, p) // registered before this batch
	} else {
		b.adds = slices.DeleteFunc(b.adds, func(a *Probe) bool { return a == p })
	}
	return nil
}

// openELF opens the probed file as ELF, once.
func (b *batch) openELF() error {
	if b.elf == nil {
		if err := checkNotSelf(b.path, b.key); err != nil {
			return err
		}
		elf, err := objfile.OpenFile(b.path, b.file) // owns b.file from now on
		if err != nil {
			b.file = nil // closed by OpenFile
			return objfileError(err)
		}
		b.elf = elf
	}
	return nil
}

func (b *batch) stageAdd(op Op) error {
	if err := b.openELF(); err != nil {
		return err
	}
	off, err := b.elf.Resolve(op.Location)
	if err != nil {
		return objfileError(err)
	}
	plan, err := b.elf.Analyze(off)
	if err != nil {
		return objfileError(err)
	}
	loc := canonicalLocation(op.Location)
	name := op.Name
	if name == "" {
		name = defaultName(loc)
		if err := checkName(name); err != nil {
			return errorf(syscall.EINVAL, "%q cannot be a probe name (%v): give one with NAME=%s", name, err, op.Location)
		}
	}
	if op.Return {
		if err := b.checkReturn(op, off); err != nil {
			return err
		}
		loc += returnSuffix
		if op.Name == "" {
			name += returnSuffix
		}
	}
	if b.staged[name] != nil {
		return errorf(syscall.EEXIST, "a probe named %q exists on %s (remove it with -%s, or choose another name with NAME=%s)", name, b.path, name, op.Location)
	}
	p := &Probe{Key: b.key, Path: b.path, Name: name, Location: loc, Offset: off, Owner: b.caller.Uid, plan: plan, Args: op.Args, Return: op.Return}
	if op.Return {
		p.hist = &fetch.Hist{}
		if b.elf.IsGo() || b.elf.HasExceptions() {
			if err := b.stageGoReturn(p); err != nil {
				return err
			}
		}
	}
	b.staged[name] = p
	b.adds = append(b.adds, p)
	return nil
}

// watch has the world watch the file before its first registration, and
// look again for the processes of a caller whose probes reach more than
// the file's did (reach.go).
func (m *Manager) watch(b *batch) error {
	if len(b.adds) == 0 {
		return nil
	}
	if b.f.watched {
		return m.widen(b)
	}
	b.f.owners.p.Store(b.f.owners.p.Load().with(b.caller.Uid))
	if err := m.setWorldFilter(b); err != nil {
		return err
	}
	if err := m.world.Watch(b.f.in, b.watchPath()); err != nil {
		e := AsError(err)
		return &Error{Errno: e.Errno, Reason: fmt.Sprintf("%s: cannot watch the processes that map it: %s", b.path, e.Reason)}
	}
	b.f.watched, b.watchedNow = true, true
	return nil
}

// register registers every added probe, all in one engine batch (one walk
// of the file's processes for all their breakpoints, probes.RegisterMany),
// then the return instructions of Go-style return probes; on a failure it
// unregisters those registered before and undoes watch.
func (m *Manager) register(b *batch) error {
	now := time.Now()
	in := b.f.in
	regs := make([]probes.Registration, len(b.adds))
	for i, p := range b.adds {
		p.ID = m.nextID.Add(1)
		p.Created = now
		p.events = m.newEventRing()
		ring := p.events
		p.consumer = consumerFor(p, ring, p.hitHandler(ring))
		m.countOutside(in, p)
		regs[i] = probes.Registration{Off: p.probeOff(), Insn: p.plan.Insn, Arch: p.plan, C: p.consumer}
	}
	fail := func(p *Probe, err error) error {
		if b.watchedNow {
			m.world.Unwatch(in)
			b.f.watched = false
		}
		e := AsError(err)
		return &Error{Errno: e.Errno, Reason: fmt.Sprintf("%s: registering %s at %#x: %s", b.path, p.Name, p.Offset, e.Reason)}
	}
	if err := m.eng.RegisterMany(in, regs); err != nil {
		p := b.adds[0]
		var me *probes.ManyError
		if errors.As(err, &me) && me.Index < len(b.adds) {
			p = b.adds[me.Index]
		}
		return fail(p, err)
	}
	for i, p := range b.adds {
		if len(p.goRets) == 0 {
			continue
		}
		if err := m.registerGoRets(in, p, p.events); err != nil {
			for _, q := range b.adds[:i] {
				m.unregisterGoRets(in, q)
			}
			m.unregisterMany(b, b.adds, "rollback: unregister failed")
			return fail(p, err)
		}
	}
	return nil
}

// unregisterMany unregisters the consumers of ps in one engine batch; a
// failure to restore a breakpoint is logged with msg.
func (m *Manager) unregisterMany(b *batch, ps []*Probe, msg string) {
	unregs := make([]probes.Unregistration, len(ps))
	for i, p := range ps {
		unregs[i] = probes.Unregistration{Off: p.probeOff(), C: p.consumer}
	}
	if err := m.eng.UnregisterMany(b.f.in, unregs); err != nil {
		m.log.Error(msg, "path", b.path, "probes", len(ps), "err", err)
	}
}

// unregisterRemoved unregisters the removed probes and ends their streams.
// A failure to restore a breakpoint is logged: the probe is gone either way.
func (m *Manager) unregisterRemoved(b *batch) {
	if len(b.removes) == 0 {
		return
	}
	for _, p := range b.removes {
		m.unregisterGoRets(b.f.in, p)
	}
	m.unregisterMany(b, b.removes, "unregister failed")
	for _, p := range b.removes {
		p.events.Close()
	}
}

// commit publishes the file's new set of probes, and unwatches a file left
// without any.
func (m *Manager) commit(b *batch) {
	f := b.f
	m.mu.Lock()
	for _, p := range b.removes {
		if f.probes[p.Name] == p {
			delete(f.probes, p.Name)
		}
	}
	for _, p := range b.adds {
		f.probes[p.Name] = p
	}
	m.releaseLocked(b) // counted in f.probes from now on
	if len(f.probes) == 0 {
		delete(m.files, b.key)
	} else {
		m.files[b.key] = f
	}
	empty := len(f.probes) == 0
	var o *owners
	for _, p := range f.probes {
		o = o.with(p.Owner)
	}
	f.owners.p.Store(o) // narrower after removals: decided at the next attach
	m.mu.Unlock()
	if empty && f.watched {
		m.world.Unwatch(f.in)
		f.watched = false
	}
}

func (m *Manager) logApplied(b *batch) {
	for _, p := range b.adds {
		m.log.Info("registered", "path", b.path, "name", p.Name, "location", p.Location, "offset", fmt.Sprintf("%#x", p.Offset), "insn", p.plan.Class, "uid", b.caller.Uid)
	}
	for _, p := range b.removes {
		m.log.Info("unregistered", "path", b.path, "name", p.Name, "hits", p.Hits(), "uid", b.caller.Uid)
	}
	for _, why := range b.left {
		m.log.Info("pattern: function left out", "path", b.path, "reason", why, "uid", b.caller.Uid)
	}
}
