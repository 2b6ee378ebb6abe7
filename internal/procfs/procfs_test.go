package procfs

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseMaps(t *testing.T) {
	in := "55d0c0a00000-55d0c0a01000 r-xp 00001000 fe:01 325835                     /tmp/a b/work\n" +
		"7fbec8724000-7fbec8726000 r-xp 00000000 00:00 0                          [vdso]\n" +
		"7ffdec38d000-7ffdec3ae000 rw-p 00000000 00:00 0 \n"
	ms, err := ParseMaps([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Fatalf("%d mappings", len(ms))
	}
	m := ms[0]
	if m.Start != 0x55d0c0a00000 || m.End != 0x55d0c0a01000 || m.Off != 0x1000 || m.Ino != 325835 ||
		m.Dev != unix.Mkdev(0xfe, 1) || m.Path != "/tmp/a b/work" || !m.Exec() {
		t.Errorf("got %+v", m)
	}
	if ms[1].Path != "[vdso]" || ms[2].Path != "" || ms[2].Exec() {
		t.Errorf("got %+v %+v", ms[1], ms[2])
	}
	for _, bad := range []string{"x", "1-2 r-xp 0 fe:00", "2-1 r-xp 0 fe:00 1", "1-2 r-xp 0 fe00 1", "1-2 rxp 0 fe:00 1"} {
		if _, err := ParseMaps([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParseMaps(f *testing.F) {
	f.Add([]byte("7fbec8724000-7fbec8726000 r-xp 00000000 00:00 0   [vdso]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := ParseMaps(b)
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.End < m.Start {
				t.Fatalf("%+v", m)
			}
		}
	})
}

// TestQuery: PROCMAP_QUERY agrees with the maps text for every file
// mapping of this process (where the kernel has it).
func TestQuery(t *testing.T) {
	f, err := OpenMaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms, err := ReadMaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range ms {
		if m.Ino == 0 {
			continue // anonymous mappings change as the runtime allocates
		}
		for _, a := range []uint64{m.Start, m.End - 1} {
			q, err := f.Query(a)
			if errors.Is(err, ErrNoQuery) {
				t.Skip("no PROCMAP_QUERY in this kernel")
			}
			if err != nil {
				t.Fatalf("query %#x (%+v): %v", a, m, err)
			}
			if q.Start != m.Start || q.End != m.End || q.Off != m.Off || q.Ino != m.Ino || q.Dev != m.Dev || q.Exec() != m.Exec() {
				t.Fatalf("query %#x = %+v, maps %+v", a, q, m)
			}
			n++
		}
	}
	if _, err := f.Query(0); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("query 0: %v, want ENOENT", err)
	}
	t.Logf("%d queries agree with the maps text", n)
}

// TestTask: the test process's children and what its threads do.
func TestTask(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	self := os.Getpid()
	tids, err := ListTasks(self)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tid := range tids {
		cs, err := Children(self, tid)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			found = found || c == cmd.Process.Pid
		}
	}
	if !found {
		t.Errorf("child %d not among the children of pid %d's threads", cmd.Process.Pid, self)
	}
	// The sleeping child is blocked in clock_nanosleep (or nanosleep),
	// or still running towards it; never an error.
	deadline := time.Now().Add(10 * time.Second)
	for {
		nr, running, err := TaskSyscall(cmd.Process.Pid, cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if !running && (nr == unix.SYS_CLOCK_NANOSLEEP || nr == unix.SYS_NANOSLEEP) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleep: syscall %d running %v", nr, running)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLines(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a\n", []string{"a"}},
		{"a\n\nb", []string{"a", "", "b"}},
		{"a\nb\n", []string{"a", "b"}},
	} {
		var got []string
		for l := range Lines([]byte(c.in)) {
			got = append(got, string(l))
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Lines(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestMappingVaddr(t *testing.T) {
	m := Mapping{Start: 0x401000, End: 0x403000, Off: 0x1000}
	for _, c := range []struct {
		off  uint64
		va   uint64
		maps bool
	}{
		{0x1000, 0x401000, true},
		{0x2fff, 0x402fff, true},
		{0x3000, 0, false}, // one past the end
		{0xfff, 0, false},  // before the start
	} {
		if va, ok := m.Vaddr(c.off); va != c.va || ok != c.maps {
			t.Errorf("Vaddr(%#x) = %#x, %v; want %#x, %v", c.off, va, ok, c.va, c.maps)
		}
	}
	if got, want := MapFile(7, &m), "/proc/7/map_files/401000-403000"; got != want {
		t.Errorf("MapFile = %q, want %q", got, want)
	}
}
