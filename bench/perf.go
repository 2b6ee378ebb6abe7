package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// perfRecord runs during() while `perf record -g` samples pids, and returns
// the top of `perf report` (by process and symbol, time including callees),
// or "" if perf is missing or fails (best effort).
func perfRecord(e *env, pids []int, during func() error) (string, error) {
	perfBin, err := exec.LookPath("perf")
	if err != nil {
		return "", during()
	}
	var ps []string
	for _, p := range pids {
		ps = append(ps, fmt.Sprint(p))
	}
	data := filepath.Join(e.dir, "perf.data")
	defer os.Remove(data)
	started, derr := recordPerf(perfBin, []string{"-g", "-o", data, "-p", strings.Join(ps, ",")}, during)
	if !started {
		return "", during()
	}
	if derr != nil {
		return "", derr
	}
	out, err := exec.Command(perfBin, "report", "-i", data, "--stdio", "--children", "--sort", "comm,symbol",
		"-g", "none", "--percent-limit", "3").Output()
	if err != nil {
		return "", nil
	}
	return perfTop(string(out), 28), nil
}

// recordPerf runs during() under `perf record -q args`: it starts perf,
// gives it 500 ms to attach (perf has no ready signal with -p; best
// effort), runs during, and stops perf (SIGINT; SIGKILL of its process
// group if it has not exited 20 s later). started is false, and during is
// not run, if perf did not start.
func recordPerf(perfBin string, args []string, during func() error) (started bool, err error) {
	rec := exec.Command(perfBin, append([]string{"record", "-q"}, args...)...)
	rec.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := rec.Start(); err != nil {
		return false, nil
	}
	forget := atExit("perf record", func() { _ = syscall.Kill(-rec.Process.Pid, syscall.SIGKILL) })
	defer forget()
	time.Sleep(500 * time.Millisecond)
	err = during()
	_ = rec.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- rec.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-rec.Process.Pid, syscall.SIGKILL)
		<-done
	}
	return true, err
}

// perfNoise are frames that say nothing about where the time goes.
var perfNoise = regexp.MustCompile(`\] (0x[0-9a-f]+|runtime\.goexit(\.abi0)?|runtime\.mstart\w*(\.abi0)?|runtime\.main|main\.main|.*gowrap\d*|entry_SYSCALL_64_after_hwframe|do_syscall_64|x64_sys_call|__raw_callee_save_\w+|syscall\.Syscall6(\.abi0)?|internal/runtime/syscall/linux\.Syscall6|__libc_start_\w+|_start)\s`)

func perfTop(report string, n int) string {
	var lines []string
	for _, l := range strings.Split(report, "\n") {
		if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" || perfNoise.MatchString(l+" ") {
			continue
		}
		l = strings.TrimRight(strings.TrimSuffix(strings.TrimRight(l, " "), "-      -"), " ")
		lines = append(lines, strings.Replace(l, "github.com/uprobefs/uprobefs/", "", 1))
		if len(lines) >= n {
			break
		}
	}
	return strings.Join(lines, "\n")
}

// profileHit records a perf profile of the daemon and the workload over
// one slotted per-hit run.
func (e *env) profileHit(t tracer, bin, fn string) {
	dm, ok := t.(daemon)
	if !ok || dm.Pid() <= 0 {
		return
	}
	c, err := startChild(bin, "hit", fn, fmt.Sprint(hitCalls), "1")
	if err != nil {
		return
	}
	defer c.kill()
	if c.expect("ready", 10*time.Second) != nil {
		return
	}
	if _, err := t.register(bin, "prof", fn); err != nil {
		logf("profile: %v", err)
		return
	}
	defer t.unregister(bin, "prof")
	rep, err := perfRecord(e, []int{dm.Pid(), c.Pid()}, func() error {
		if err := c.send("go"); err != nil {
			return err
		}
		_, err := c.line(2 * time.Minute)
		return err
	})
	if err != nil || rep == "" {
		return
	}
	e.perf = fmt.Sprintf("perf record -g -p <%s>,<workload> over one slotted run of %d hits (children = time including callees; comm ufsbench is the agent, uprobefs the daemon, hit the workload):\n         children  self  comm  symbol\n%s", t.Name(), hitCalls, rep)
}

// perfShare returns the "children" percentage of the first line of a
// perfTop report whose symbol is sym (0 if absent).
func perfShare(report, sym string) float64 {
	for _, l := range strings.Split(report, "\n") {
		f := strings.Fields(l)
		if len(f) >= 5 && f[len(f)-1] == sym {
			var x float64
			fmt.Sscanf(strings.TrimSuffix(f[0], "%"), "%g", &x)
			return x
		}
	}
	return 0
}

// perfSay describes the shares of the given symbols in report, as
// "label X %" phrases, skipping absent ones.
func perfSay(report string, pairs ...string) string {
	var out []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if x := perfShare(report, pairs[i]); x > 0 {
			out = append(out, fmt.Sprintf("%s %.0f %%", pairs[i+1], x))
		}
	}
	return strings.Join(out, ", ")
}
