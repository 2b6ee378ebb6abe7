package fetch

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/install"
	"github.com/uprobefs/uprobefs/internal/kuprobe"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// procMem reads a process's memory through /proc/PID/mem, stopping at the
// first page that cannot be read.
type procMem struct{ f *os.File }

func (m procMem) ReadMemory(addr uint64, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		chunk := min(len(p)-n, 4096-int((addr+uint64(n))&4095))
		k, err := m.f.ReadAt(p[n:n+chunk], int64(addr+uint64(n)))
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestKernelValues compares Eval with the kernel's own trace output: the
// kernel's uprobe and uretprobe, with fetch arguments, on a private copy of
// testdata/args.c; the fixture then waits, and our Eval of the same
// arguments, with the registers the fixture's call had and its memory read
// through /proc/PID/mem, must print the same text, argument by argument.
func TestKernelValues(t *testing.T) {
	if err := kuprobe.Available(); err != nil {
		t.Skip(err)
	}
	bin := testfix.Copy(t, testfix.Build(t, "testdata/args.c", "-O0", "-fcf-protection=none"))
	off := testfix.SymOff(t, bin, "probed")
	helloOff := testfix.SymOff(t, bin, "hello")
	entry := []string{
		"%di", "%di:u8", "%r8", "%r8:s32", "%r8:s64", "%r8:u16", "%si:x16",
		"+0(%si):string", "+7(%si):string", "+0(%si):ustring", "+0(%si):u8", "+0(%si):x32", "+0(%si):char",
		"+0(%dx):u32", "+4(%dx):s32", "+4(%dx):x32", "+4(%dx):u64",
		"+0(+8(%dx)):string", "+0(+8(+16(%dx))):string", "+0(+16(%dx)):u32", "+4(+16(%dx)):s8",
		"+24(%dx):b4@4/8", "+24(%dx):b3@0/8", "+24(%dx):s8", "+25(%dx):x8", "+24(%dx):u16",
		"+26(%dx):b7@1/32", "+24(%dx):s64", "-u8(+u16(%dx)):s32",
		"+0(%cx):string", "+0(%cx):ustring", "+0(%cx):u64", "+8(%cx):u32", "%cx",
		"$comm", "c=$comm:string", `\42:u8`, `\-1:s16`, `\0x10`, `\"imm"`,
		"named=+0(%si):string", fmt.Sprintf("@+%#x:string", helloOff), fmt.Sprintf("@+%d:u8", helloOff+1),
	}
	ret := []string{"$retval", "$retval:s32", "$retval:u8", "%ax:s64", "$comm"}

	name := fmt.Sprintf("ufsval%d", os.Getpid())
	kp, err := kuprobe.AddSpec("p", name+"_p", bin, off, strings.Join(entry, " "))
	if err != nil {
		t.Fatalf("kernel refuses the entry probe: %v", err)
	}
	t.Cleanup(func() { kp.Remove() })
	kr, err := kuprobe.AddSpec("r", name+"_r", bin, off, strings.Join(ret, " "))
	if err != nil {
		t.Fatalf("kernel refuses the return probe: %v", err)
	}
	t.Cleanup(func() { kr.Remove() })
	// A private trace instance: its own buffer, nobody else's events.
	inst, err := kuprobe.NewInstance(name)
	if err != nil {
		t.Skipf("no trace instance: %v", err)
	}
	t.Cleanup(func() {
		if err := inst.Close(); err != nil {
			t.Errorf("remove trace instance: %v", err)
		}
	})
	for _, p := range []*kuprobe.Probe{kp, kr} {
		if err := inst.Enable(p); err != nil {
			t.Fatal(err)
		}
	}

	cmd := exec.Command(bin)
	stdin, stdout := testfix.StartPiped(t, cmd)
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("fixture: %v", err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("fixture did not exit")
		}
	})
	lineCh := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		lineCh <- l
	}()
	var line string
	select {
	case line = <-lineCh:
	case <-time.After(10 * time.Second):
		t.Fatal("fixture printed nothing in 10 s")
	}
	var hello, first uint64
	var rv int64
	if _, err := fmt.Sscan(line, &hello, &first, &rv); err != nil {
		t.Fatalf("fixture printed %q: %v", line, err)
	}
	// The events were written by the fixture's thread at the hits, before
	// it printed: the trace holds them now.
	b, err := inst.Trace()
	if err != nil {
		t.Fatal(err)
	}
	kernel := map[string]string{}
	for _, ev := range []string{"_p", "_r"} {
		if k := kuprobe.EventArgs(b, name+ev); k != "" {
			kernel[ev] = k
		}
	}
	mf, err := os.Open(fmt.Sprintf("/proc/%d/mem", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid))
	ctx := Context{
		Regs: &install.Regs{Rdi: 42, Rsi: hello, Rdx: first, Rcx: 16, R8: ^uint64(2)}, // r8 = -3
		Mem:  procMem{mf}, Comm: strings.TrimSpace(string(comm)),
		FileOffset: func(o uint64) (uint64, bool) { return hello - helloOff + o, true },
	}
	rctx := Context{Regs: &install.Regs{Rax: uint64(rv)}, Retval: uint64(rv), Comm: ctx.Comm}
	for _, c := range []struct {
		ev   string
		args []string
		ctx  Context
	}{{"_p", entry, ctx}, {"_r", ret, rctx}} {
		parsed, err := Parse(c.args, c.ev == "_r")
		if err != nil {
			t.Fatal(err)
		}
		k, ok := kernel[c.ev]
		if !ok {
			t.Fatalf("no %s event in the kernel's trace:\n%s", c.ev, b)
		}
		ours := Format(parsed, c.ctx)
		if ours != k {
			for _, d := range kuprobe.FieldDiffs(k, ours) {
				t.Errorf("%s %s", c.ev, d)
			}
			t.Errorf("%s: kernel\n%s\nours\n%s", c.ev, k, ours)
		}
	}
}
