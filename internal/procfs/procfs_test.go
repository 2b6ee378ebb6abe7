package procfs

import (
	"testing"

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
