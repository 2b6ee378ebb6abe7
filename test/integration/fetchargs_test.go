package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/kuprobe"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// fetchArgs are the entry arguments compared with the kernel: integers of
// every type, pointers, strings, nested dereferences, a bad pointer,
// $comm, @+OFFSET (added with the fixture's offset).
var fetchArgs = []string{
	"%di", "%si", "%di:u8", "%r8:s32", "%si:x16",
	"+0(%si):string", "+7(%si):string", "+0(%si):u8",
	"+0(%dx):u32", "+4(%dx):s32", "+0(+8(%dx)):string", "+8(+16(%dx)):u32",
	"+0(+8(+16(%dx))):string", "+24(%dx):b4@4/8",
	"+0(%cx):string", "+0(%cx):u64", "c=$comm",
}

// runArgs runs the args fixture without address randomisation (so that
// both runs see the same pointers) and waits for it to exit.
func runArgs(t *testing.T, bin string) {
	t.Helper()
	cmd := exec.Command("setarch", "-R", bin)
	stdin, out := testfix.StartPiped(t, cmd)
	done := make(chan error, 1)
	go func() {
		bufio.NewReader(out).ReadString('\n') // it has called probed
		stdin.Close()
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("args fixture: %v (a fetched bad pointer must not harm it)", err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("args fixture did not end")
	}
}

// TestFetchArgsAgainstKernel: the same fetch arguments on the same private
// binary and offset, the kernel's uprobe first, then uprobefs: the values
// in uprobefs's event equal those of the kernel's trace line, byte for
// byte.
func TestFetchArgsAgainstKernel(t *testing.T) {
	if err := kuprobe.Available(); err != nil {
		t.Fatalf("kernel uprobes: %v (make prereq mounts tracefs)", err)
	}
	bin := testfix.Copy(t, testfix.CC(t, "../../core/fetch/testdata/args.c", "-O0", "-fcf-protection=none"))
	testfix.Reachable(t, bin)
	entry := append(append([]string{}, fetchArgs...), fmt.Sprintf("h=@+%#x:string", testfix.SymOff(t, bin, "hello")))
	t.Run("entry", func(t *testing.T) { compareArgs(t, bin, "p", entry) })
	t.Run("return", func(t *testing.T) {
		compareArgs(t, bin, "r", []string{"$retval", "$retval:s32", "$retval:u8", "$retval:x16", "c=$comm"})
	})
}

// compareArgs compares the values of args of a probe of kind ("p" or "r")
// on bin's probed(), the kernel's first, then uprobefs's.
func compareArgs(t *testing.T, bin, kind string, args []string) {
	off := testfix.SymOff(t, bin, "probed")

	// The kernel, in a private trace instance.
	name := fmt.Sprintf("ufsargs%d", os.Getpid())
	k, err := kuprobe.AddSpec(kind, name, bin, off, strings.Join(args, " "))
	if err != nil {
		t.Fatalf("kernel refuses the probe: %v", err)
	}
	inst, err := kuprobe.NewInstance(name)
	if err != nil {
		k.Remove()
		t.Fatal(err)
	}
	cleanup := func() {
		inst.Close()
		k.Remove()
	}
	t.Cleanup(cleanup)
	if err := inst.Enable(k); err != nil {
		t.Fatal(err)
	}
	runArgs(t, bin)
	trace, err := inst.Trace()
	if err != nil {
		t.Fatal(err)
	}
	kernel := kuprobe.EventArgs(trace, name)
	if kernel == "" {
		t.Fatalf("no event in the kernel's trace:\n%s", trace)
	}
	cleanup() // one tracer on the file at a time

	// uprobefs: a reader streams the events, then the fixture runs.
	d := startDaemon(t)
	d.must(fmt.Sprintf("echo '%s:a probed %s' > %s/probes", kind, strings.Join(args, " "), d.in(bin)))
	ev := make(chan result, 1)
	go func() { ev <- d.sh("timeout 30 head -n 1 " + d.in(bin) + "/a/events") }()
	d.waitReaders(1)
	runArgs(t, bin)
	r := <-ev
	i := strings.Index(r.out, " addr=0x")
	if r.code != 0 || i < 0 {
		t.Fatalf("events: exit %d %q", r.code, r.out)
	}
	ours := strings.TrimRight(r.out[i+len(" addr=0x"):], "\n")
	ours = ours[strings.IndexByte(ours, ' '):]
	if kind == "r" { // " ret=0xCALLER dur=NS" first
		for _, f := range []string{" ret=", " dur="} {
			if !strings.HasPrefix(ours, f) {
				t.Fatalf("return event without%s: %q", f, ours)
			}
			ours = ours[1:]
			ours = ours[strings.IndexByte(ours, ' '):]
		}
	}
	if ours != kernel {
		for _, d := range kuprobe.FieldDiffs(kernel, ours) {
			t.Error(d)
		}
		t.Fatalf("kernel:\n%s\nuprobefs:\n%s", kernel, ours)
	}
	t.Logf("%d arguments equal the kernel's:%s", len(args), ours)
}
