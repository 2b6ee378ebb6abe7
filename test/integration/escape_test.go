package integration

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uprobefs/uprobefs/core/manager"
)

// TestEscapedListings: a real binary named $'a b\nc' (a space and a
// newline) is probed through a real mount; every line of errors, probes,
// status and events is one entry, its path field unescapes to the real
// path, and reasons that embed the path are escaped too.
func TestEscapedListings(t *testing.T) {
	d := startDaemon(t)
	src := buildFixture(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "a b\nc")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	fx := startFixture(t, bin, -1)
	P := d.in(bin)
	read := func(p string) string {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	lines := func(s string) []string {
		if s == "" {
			return nil
		}
		if !strings.HasSuffix(s, "\n") {
			t.Fatalf("%q does not end in a newline", s)
		}
		return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	}
	if err := os.WriteFile(P+"/probes", []byte("tick\n"), 0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for strings.TrimSpace(read(P+"/tick/hits")) == "0" {
		if time.Now().After(deadline) {
			t.Fatalf("no hits\n%s", d.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	// .uprobefs/probes: PATH NAME LOCATION 0xOFFSET HITS MODE, PATH escaped.
	ls := lines(read(d.mnt + "/.uprobefs/probes"))
	if len(ls) != 1 {
		t.Fatalf(".uprobefs/probes has %d lines, want 1: %q", len(ls), ls)
	}
	if f := strings.Fields(ls[0]); len(f) != 6 || manager.Unescape(f[0]) != bin || f[1] != "tick" {
		t.Fatalf(".uprobefs/probes line %q: want 6 fields, the path first", ls[0])
	}
	if ls := lines(read(P + "/probes")); len(ls) != 1 || len(strings.Fields(ls[0])) != 5 {
		t.Fatalf("FILE/probes = %q", ls)
	}
	// status: one line per process.
	st := lines(read(P + "/tick/status"))
	if len(st) != 1 || !strings.HasPrefix(st[0], "pid="+strconv.Itoa(fx.pid())+" ") || !isInstalled(st[0]) {
		t.Fatalf("status = %q", st)
	}
	// events: whole lines of numbers.
	ev, err := os.OpenFile(P+"/tick/events", os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 4096)
		n, _ := ev.Read(buf)
		got <- string(buf[:n])
	}()
	select {
	case s := <-got:
		re := regexp.MustCompile(`^\d+\.\d{9} pid=\d+ tid=\d+ addr=0x[0-9a-f]+$`)
		for _, l := range lines(s) {
			if !re.MatchString(l) {
				t.Errorf("events line %q", l)
			}
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no event")
	}
	ev.Close()

	// errors: two refusals whose reasons embed the path are two lines.
	for _, in := range []string{"no_such_symbol\n", "-no_such_probe\n"} {
		err := os.WriteFile(P+"/probes", []byte(in), 0)
		if !errors.Is(err, syscall.ENOENT) {
			t.Fatalf("write %q: %v, want ENOENT", in, err)
		}
	}
	es := lines(read(d.mnt + "/.uprobefs/errors"))
	if len(es) != 2 {
		t.Fatalf("errors has %d lines, want 2: %q", len(es), es)
	}
	for _, l := range es {
		f := strings.Fields(l)
		if len(f) < 5 || !strings.HasPrefix(f[4], "path=") || manager.Unescape(strings.TrimPrefix(f[4], "path=")) != bin {
			t.Errorf("errors line %q: path field does not unescape to %q", l, bin)
		}
	}
	if !strings.Contains(es[1], `on `+dir+`/a b\012c`) {
		t.Errorf("reason of %q does not name the escaped path", es[1])
	}
}
