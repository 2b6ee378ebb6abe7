package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// startWaiters runs n copies of the glob fixture's "wait" mode (each maps
// the binary and pauses) and waits until every one has said "ready".
// Cleanup kills them.
func startWaiters(tb testing.TB, bin string, n int) []*exec.Cmd {
	tb.Helper()
	var cmds []*exec.Cmd
	tb.Cleanup(func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	})
	ready := make(chan error, n)
	for range n {
		c := exec.Command(bin, "wait")
		r, err := c.StdoutPipe()
		if err != nil {
			tb.Fatal(err)
		}
		if err := c.Start(); err != nil {
			tb.Fatal(err)
		}
		cmds = append(cmds, c)
		go func() {
			line, err := bufio.NewReader(r).ReadString('\n')
			if err == nil && line != "ready\n" {
				err = fmt.Errorf("pid %d said %q", c.Process.Pid, line)
			}
			ready <- err
		}()
	}
	deadline := time.After(60 * time.Second)
	for range n {
		select {
		case err := <-ready:
			if err != nil {
				tb.Fatal(err)
			}
		case <-deadline:
			tb.Fatal("waiters not ready in time")
		}
	}
	return cmds
}

// writeProbes writes text into the probes file in one write(2) and
// returns how long the write took.
func writeProbes(tb testing.TB, probesFile, text string) time.Duration {
	tb.Helper()
	f, err := os.OpenFile(probesFile, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	t0 := time.Now()
	n, err := f.Write([]byte(text))
	d := time.Since(t0)
	if err != nil || n != len(text) {
		tb.Fatalf("write %q to %s: %d, %v", text[:min(len(text), 40)], probesFile, n, err)
	}
	return d
}

// BenchmarkBatch1000 measures, on a real mount with 1 and with 100
// processes mapping the glob fixture (up to 100,000 breakpoints), 1,000
// probes registered by one write (a pattern, then 1,000 lines) and removed
// by one pattern write. Each figure is reported per write (ms/...); ns/op
// is a whole round. The first registration is reported apart
// (ms/register-first): the first breakpoint write into each text page of a
// process copies the page (copy-on-write), later rounds reuse the copy.
//
//	go test -run XXX -bench Batch1000 -benchtime 3x ./test/integration
func BenchmarkBatch1000(b *testing.B) {
	for _, procs := range []int{1, 100} {
		b.Run(fmt.Sprintf("procs=%d", procs), func(b *testing.B) {
			d := startDaemon(b)
			bin := testfix.Glob(b)
			startWaiters(b, bin, procs)
			P := d.in(bin) + "/probes"
			var lines strings.Builder
			for i := range 1000 {
				fmt.Fprintf(&lines, "many_%d\n", i)
			}
			first := writeProbes(b, P, lines.String())
			writeProbes(b, P, "-many_*\n")
			var regPat, regLines, rmPat time.Duration
			b.ResetTimer()
			for range b.N {
				regPat += writeProbes(b, P, "many_*\n")
				rmPat += writeProbes(b, P, "-many_*\n")
				regLines += writeProbes(b, P, lines.String())
				rmPat += writeProbes(b, P, "-many_*\n")
			}
			b.StopTimer()
			ms := func(d time.Duration, n int) float64 { return float64(d) / float64(n) / 1e6 }
			b.ReportMetric(ms(first, 1), "ms/register-first")
			b.ReportMetric(ms(regPat, b.N), "ms/register-pattern")
			b.ReportMetric(ms(regLines, b.N), "ms/register-1000-lines")
			b.ReportMetric(ms(rmPat, 2*b.N), "ms/remove-pattern")
			if st := d.must("cat $M/.uprobefs/stats"); !strings.Contains(st, "probes 0\n") {
				b.Fatalf("probes left:\n%s", st)
			}
		})
	}
}
