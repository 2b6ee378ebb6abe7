package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rssKiB returns the resident set size of process pid in KiB (VmRSS).
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("VmRSS %q", v)
			}
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// floodRSSBoundKiB is the most the daemon's RSS may grow over its start
// under the floods of TestMemoryBounded, one after the other: 64 MiB, four
// times that for a daemon built with the race detector (its shadow memory
// and allocation tracking multiply the heap's footprint). Measured: +3 MiB
// after the refused writes, +31 MiB with 1,000 full rings on top, +36 MiB
// with 10,000 probes on top (under -race: +8, +129, +161 MiB). Without the
// bounds, the refused writes alone grew it by 104 MiB (the error log kept
// every input) and 1,000 full rings by 170 MiB more.
func floodRSSBoundKiB() int {
	if raceEnabled {
		return 4 * 64 << 10
	}
	return 64 << 10
}

// TestMemoryBounded: floods of what any user may write do not grow the
// daemon's memory beyond a bound: 1,100 refused 64 KiB writes (the error
// log keeps a bounded excerpt of each and a bounded total), and probes up
// to the limit (then ENOSPC), and events readers that never read (bounded
// rings). The daemon keeps working after each.
func TestMemoryBounded(t *testing.T) {
	d, P, _ := startFixtureRig(t, buildFixture(t))
	d.must("echo tick > " + P + "/probes")
	d.waitHitsAbove(P+"/tick", 0)
	pid := d.cmd.Process.Pid
	base := rssKiB(t, pid)
	check := func(what string) {
		t.Helper()
		rss := rssKiB(t, pid)
		t.Logf("%s: daemon RSS %d KiB (%+d KiB over %d KiB at the start)", what, rss, rss-base, base)
		if bound := floodRSSBoundKiB(); rss-base > bound {
			t.Fatalf("%s: daemon RSS grew by %d KiB, bound %d KiB", what, rss-base, bound)
		}
	}

	// Refused writes: 16 lines of 4095 bytes (an unknown symbol each).
	line := bytes.Repeat([]byte{'a'}, 4095)
	var buf []byte
	for range 16 {
		buf = append(append(buf, line...), '\n')
	}
	if len(buf) != 64<<10 {
		t.Fatalf("write of %d bytes", len(buf))
	}
	fh, err := os.OpenFile(P+"/probes", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1100 {
		buf[0] = 'a' + byte(i%26)
		if _, err := fh.Write(buf); !errors.Is(err, syscall.ENOENT) {
			t.Fatalf("write %d: %v, want ENOENT", i, err)
		}
	}
	fh.Close()
	check("1,100 refused 64 KiB writes")
	errs, err := os.ReadFile(d.mnt + "/.uprobefs/errors")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(errs), "\n"), "\n")
	if len(lines) != 1000 || len(errs) > 4<<20 {
		t.Fatalf("errors file: %d lines, %d bytes; want the last 1000 in at most 4 MiB", len(lines), len(errs))
	}
	last := fmt.Sprintf(`input="%c%s"...(65536 bytes) reason: `, 'a'+byte(1099%26), line[:159])
	if !strings.Contains(lines[999], last) {
		t.Fatalf("last errors line %.300q lacks the excerpt of the last write", lines[999])
	}

	// Event rings: 1000 open readers that never read, while every hit
	// pushes into each of their rings, until a full ring (4096 events)
	// would have wrapped. Unbounded, that is 1000 x 4096 events (160 MiB);
	// the rings share 262144 events, at least 64 each.
	var batch strings.Builder
	for i := 1; i <= 1000; i++ {
		fmt.Fprintf(&batch, "n%d=tick\n", i)
	}
	if err := os.WriteFile(P+"/probes", []byte(batch.String()), 0); err != nil {
		t.Fatal(err)
	}
	var readers []*os.File
	t.Cleanup(func() {
		for _, f := range readers {
			f.Close()
		}
	})
	for i := 1; i <= 1000; i++ {
		f, err := os.Open(fmt.Sprintf("%s/n%d/events", P, i))
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, f)
	}
	d.waitReaders(1000)
	h := d.hits(P + "/n1")
	deadline := time.Now().Add(60 * time.Second)
	for d.hits(P+"/n1") < h+4200 {
		if time.Now().After(deadline) {
			t.Fatalf("hits of n1 rose from %d to %d in 60 s, want +4200", h, d.hits(P+"/n1"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	check("1,000 readers with full rings")
	for _, f := range readers {
		f.Close()
	}
	readers = nil
	d.waitReaders(0)

	// Probes up to the limit: consumers of one location, in 64 KiB
	// batches; one more is ENOSPC.
	batch.Reset()
	flush := func() {
		t.Helper()
		if batch.Len() == 0 {
			return
		}
		if err := os.WriteFile(P+"/probes", []byte(batch.String()), 0); err != nil {
			t.Fatalf("batch: %v", err)
		}
		batch.Reset()
	}
	for i := 1001; i < 10000; i++ { // tick and n1..n1000 are there
		l := fmt.Sprintf("n%d=tick\n", i)
		if batch.Len()+len(l) > 64<<10 {
			flush()
		}
		batch.WriteString(l)
	}
	flush()
	err = os.WriteFile(P+"/probes", []byte("one_more=tick\n"), 0)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("probe 10001: %v, want ENOSPC", err)
	}
	check("10,000 probes and a refused 10,001st")
	if st := d.must("cat $M/.uprobefs/stats"); !strings.Contains(st, "probes 10000\n") {
		t.Fatalf("stats:\n%s", st)
	}
	h = d.hits(P + "/n9999")
	d.waitHitsAbove(P+"/n9999", h)
}
