package main

// Engine figures: the srcu read side against sync.RWMutex (the package's own
// go test benchmarks, parsed), and Register/Unregister/MmapHook of the
// engine over 10,000 in-memory MMs (measured here, in process).

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uprobefs/uprobefs/core/probes"
	"github.com/uprobefs/uprobefs/core/rmap"
)

var benchLineRE = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([0-9.]+) ns/op`)

// goBench runs `go test -bench re` in pkg count times and returns the ns/op
// samples by benchmark name (without the -GOMAXPROCS suffix).
func goBench(goCmd, pkg, re string, count int, benchtime string) (map[string][]float64, error) {
	cmd := exec.Command(goCmd, "test", "-run", "^$", "-bench", re, "-benchtime", benchtime,
		"-count", strconv.Itoa(count), "-timeout", "3m", pkg)
	cmd.Dir = repoRoot
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	forget := atExit("go test "+pkg, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err := cmd.Wait()
	forget()
	if err != nil {
		return nil, fmt.Errorf("go test -bench %s %s: %v\n%s", re, pkg, err, tail(out.String(), 800))
	}
	res := map[string][]float64{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if m := benchLineRE.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			x, _ := strconv.ParseFloat(m[2], 64)
			res[m[1]] = append(res[m[1]], x)
		}
	}
	return res, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// memAS is an address space of a few one-page regions: enough for the
// engine's verify-opcode install and remove.
type memAS struct {
	pages map[uint64][]byte // page address -> contents
}

func (a *memAS) page(vaddr uint64, n int) ([]byte, error) {
	base := vaddr &^ (simPage - 1)
	pg := a.pages[base]
	if pg == nil || vaddr+uint64(n) > base+simPage {
		return nil, syscall.EFAULT
	}
	return pg[vaddr-base:], nil
}

func (a *memAS) ReadMemory(vaddr uint64, p []byte) error { return a.copyAt(vaddr, p, false) }

func (a *memAS) WriteMemory(vaddr uint64, p []byte) error { return a.copyAt(vaddr, p, true) }

// copyAt copies p from the memory at vaddr, or into it if write.
func (a *memAS) copyAt(vaddr uint64, p []byte, write bool) error {
	pg, err := a.page(vaddr, len(p))
	if err != nil {
		return err
	}
	if write {
		copy(pg, p)
	} else {
		copy(p, pg)
	}
	return nil
}

const (
	simText  = 0x400000
	simText2 = 0x800000
	simPage  = 4096
)

// simEngine is an engine over n MMs that each map one executable page of
// one inode at simText (and have room for a second mapping at simText2).
type simEngine struct {
	eng *probes.Engine
	in  *rmap.Inode
	mms []*rmap.MM
	as  []*memAS
}

func newSimEngine(n int) *simEngine {
	var inodes rmap.Inodes
	s := &simEngine{eng: probes.NewEngine(probes.EngineOptions{}), in: inodes.Get(rmap.InodeKey{Dev: 1, Ino: 1})}
	for i := 0; i < n; i++ {
		// Two pages of "push %rbp" (0x55): the text mapping and the
		// second one MmapHook is measured on.
		as := &memAS{pages: map[uint64][]byte{
			simText:  bytes.Repeat([]byte{0x55}, simPage),
			simText2: bytes.Repeat([]byte{0x55}, simPage),
		}}
		mm := rmap.NewMM(i+1, as)
		mm.MmapSem.Lock()
		mm.InsertVMALocked(&rmap.VMA{MM: mm, Start: simText, End: simText + simPage, Pgoff: 0, Inode: s.in, Exec: true})
		mm.MmapSem.Unlock()
		s.mms = append(s.mms, mm)
		s.as = append(s.as, as)
	}
	return s
}

// engineFigures returns the engine rows measured with n MMs, runs times.
func engineFigures(n, runs int) ([]row, error) {
	s := newSimEngine(n)
	runtime.GC()
	var reg, unreg, regPer, hook, unhook value
	c := &probes.Consumer{Name: "bench"}
	insn := []byte{0x55}
	for r := 0; r < runs; r++ {
		t0 := time.Now()
		if err := s.eng.Register(s.in, 0x10, insn, nil, c); err != nil {
			return nil, fmt.Errorf("Register: %w", err)
		}
		d := time.Since(t0)
		reg.S = append(reg.S, float64(d))
		regPer.S = append(regPer.S, float64(d)/float64(n))
		for i, mm := range s.mms {
			if mm.UprobesCount() != 1 || s.as[i].pages[simText][0x10] != 0xCC {
				return nil, fmt.Errorf("Register: MM %d has no breakpoint (count %d)", mm.ID, mm.UprobesCount())
			}
		}
		t0 = time.Now()
		if err := s.eng.Unregister(s.in, 0x10, c); err != nil {
			return nil, fmt.Errorf("Unregister: %w", err)
		}
		unreg.S = append(unreg.S, float64(time.Since(t0)))
		if s.as[0].pages[simText][0x10] != 0x55 {
			return nil, fmt.Errorf("Unregister left a breakpoint")
		}
	}
	// MmapHook: 10 uprobes on the inode; every MM maps the page again at
	// simText2 (an exec or dlopen of the binary); time the hook alone.
	var cs []*probes.Consumer
	for i := 0; i < 10; i++ {
		c := &probes.Consumer{Name: fmt.Sprint(i)}
		if err := s.eng.Register(s.in, uint64(0x100+i*0x10), insn, nil, c); err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	for r := 0; r < runs; r++ {
		var hookNs, unhookNs time.Duration
		vmas := make([]*rmap.VMA, len(s.mms))
		for i, mm := range s.mms {
			v := &rmap.VMA{MM: mm, Start: simText2, End: simText2 + simPage, Pgoff: 0, Inode: s.in, Exec: true}
			mm.MmapSem.Lock()
			mm.InsertVMALocked(v)
			t0 := time.Now()
			err := s.eng.MmapHook(v)
			hookNs += time.Since(t0)
			mm.MmapSem.Unlock()
			if err != nil {
				return nil, fmt.Errorf("MmapHook: %w", err)
			}
			vmas[i] = v
		}
		if got := s.as[n-1].pages[simText2][0x100]; got != 0xCC {
			return nil, fmt.Errorf("MmapHook did not install (byte %#x)", got)
		}
		for i, mm := range s.mms {
			mm.MmapSem.Lock()
			mm.RemoveVMALocked(vmas[i])
			t0 := time.Now()
			s.eng.MunmapHook(vmas[i])
			unhookNs += time.Since(t0)
			mm.MmapSem.Unlock()
			// The page keeps its breakpoints as a dead mapping would;
			// restore it for the next round.
			copy(s.as[i].pages[simText2], bytes.Repeat([]byte{0x55}, simPage))
		}
		hook.S = append(hook.S, float64(hookNs)/float64(n))
		unhook.S = append(unhook.S, float64(unhookNs)/float64(n))
	}
	for i, c := range cs {
		if err := s.eng.Unregister(s.in, uint64(0x100+i*0x10), c); err != nil {
			return nil, err
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sec := "Engine (in-memory MMs, no processes)"
	na := value{Note: "n/a (in-kernel)"}
	return []row{
		{Section: sec, Name: fmt.Sprintf("Register, 1 probe into %d MMs (wall)", n), Unit: uNs, Ours: reg, Ref: na},
		{Section: sec, Name: fmt.Sprintf("Register per MM (%d MMs)", n), Unit: uNs, Ours: regPer, Ref: value{Note: "see registration rows (kernel µs per process)"}},
		{Section: sec, Name: fmt.Sprintf("Unregister, 1 probe from %d MMs (wall)", n), Unit: uNs, Ours: unreg, Ref: na},
		{Section: sec, Name: fmt.Sprintf("MmapHook per new VMA (10 uprobes on the inode, %d MMs)", n), Unit: uNs, Ours: hook, Ref: na},
		{Section: sec, Name: fmt.Sprintf("MunmapHook per VMA (%d MMs)", n), Unit: uNs, Ours: unhook, Ref: na},
	}, nil
}

// srcuFigures runs core/srcu's benchmarks.
func srcuFigures(goCmd string, runs int) ([]row, error) {
	res, err := goBench(goCmd, "./core/srcu", "ReadPair|RLockPair", runs, "200ms")
	if err != nil {
		return nil, err
	}
	get := func(name string) value {
		if s := res[name]; len(s) > 0 {
			return value{S: s}
		}
		return value{Note: "failed: no " + name + " in go test output"}
	}
	sec := "Engine (in-memory MMs, no processes)"
	return []row{
		{Section: sec, Name: "srcu ReadLock+ReadUnlock (1 goroutine)", Unit: uNs, Ours: get("BenchmarkSRCUReadPair"), Ref: get("BenchmarkRWMutexRLockPair"), RefName: "sync.RWMutex RLock+RUnlock"},
		{Section: sec, Name: fmt.Sprintf("srcu read pair, parallel (GOMAXPROCS=%d)", runtime.NumCPU()), Unit: uNs, Ours: get("BenchmarkSRCUReadPairParallel"), Ref: get("BenchmarkRWMutexRLockPairParallel"), RefName: "sync.RWMutex RLock+RUnlock"},
	}, nil
}

// rssKiB reads VmRSS (or another field) of pid from /proc.
func procStatusKiB(pid int, field string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			fs := strings.Fields(l)
			if len(fs) >= 2 {
				return strconv.ParseFloat(fs[1], 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
