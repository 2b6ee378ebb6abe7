package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/internal/procfs"
	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestTable: entries added are live in a second mapping of the memfd (the
// guardian's), removed ones are not, a full table grows, slots are reused.
// create is Create(n) for t, closed in t.Cleanup.
func create(t *testing.T, n int) *Ledger {
	t.Helper()
	l, err := Create(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestTable(t *testing.T) {
	l := create(t, 4)
	g, err := Open(dupFile(t, l.File()))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for i := range 4 {
		if err := l.Add(Entry{Owner: 10 + i%2, Pid: 10 + i%2, Vaddr: uint64(0x1000 + i), Orig: byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Add(Entry{Owner: 99, Vaddr: 1}); err != nil {
		t.Errorf("fifth entry (the table grows): %v", err)
	}
	l.Remove(99, 1)
	g.Close()
	// The guardian maps it once the daemon is dead: at its final size.
	if g, err = Open(dupFile(t, l.File())); err != nil {
		t.Fatal(err)
	}
	if err := l.Add(Entry{Owner: 10, Pid: 10, Vaddr: 0x1000, Orig: 0x55}); err != nil {
		t.Errorf("update of a live entry: %v", err)
	}
	l.Remove(11, 0x1001)
	if got := len(g.Live()); got != 3 {
		t.Errorf("%d live entries after a remove, want 3: %v", got, g.Live())
	}
	l.DropOwner(10)
	live := g.Live()
	if len(live) != 1 || !reflect.DeepEqual(live[0], Entry{Owner: 11, Pid: 11, Vaddr: 0x1003, Orig: 3}) {
		t.Errorf("after dropping owner 10: %+v", live)
	}
	if err := l.Add(Entry{Owner: 12, Vaddr: 7}); err != nil || l.Len() != 2 {
		t.Errorf("reuse of a freed slot: %v, %d live", err, l.Len())
	}
	if g.Clean() {
		t.Error("clean before SetClean")
	}
	l.SetClean()
	if !g.Clean() {
		t.Error("not clean after SetClean")
	}
}

func dupFile(t *testing.T, f *os.File) *os.File {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fd), "dup")
}

// TestRestore writes int3s into the text of a running private copy of
// sleep, records them, and restores them: the text equals the file again;
// an entry whose byte is not an int3 any more, or whose address maps
// another file, is skipped and left as it is.
// sleeper starts a private copy of sleep and returns its pid, its text
// mapping once it sleeps (none of its text running), the file and its
// /proc/PID/mem.
func sleeper(t *testing.T) (int, procfs.Mapping, []byte, *os.File) {
	t.Helper()
	bin := testfix.Copy(t, "/bin/sleep")
	cmd := exec.Command(bin, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pid := cmd.Process.Pid
	// Until it sleeps in clock_nanosleep: its text mapped, and none of
	// it running (an int3 written below must not be executed).
	var text procfs.Mapping
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		if nr, _, err := procfs.TaskSyscall(pid, pid); err != nil || (nr != unix.SYS_CLOCK_NANOSLEEP && nr != unix.SYS_NANOSLEEP) {
			continue
		}
		ms, _ := procfs.ReadMaps(pid)
		for _, m := range ms {
			if m.Exec() && m.Path == bin {
				text = m
			}
		}
		break
	}
	if text.Start == 0 {
		t.Fatal("no text mapping of the copy")
	}
	file, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	return pid, text, file, mem
}

func TestRestore(t *testing.T) {
	pid, text, file, mem := sleeper(t)
	l := create(t, 16)
	for i := uint64(0); i < 5; i++ {
		va := text.Start + 0x40 + i*7
		off := text.Off + (va - text.Start)
		l.Add(Entry{Owner: pid, Pid: pid, Vaddr: va, Dev: text.Dev, Ino: text.Ino, Off: off, Orig: file[off]})
		if i < 4 {
			mem.WriteAt([]byte{0xcc}, int64(va))
		}
	}
	// One entry that claims another inode: never written.
	va := text.Start + 0x100
	mem.WriteAt([]byte{0xcc}, int64(va))
	l.Add(Entry{Owner: pid, Pid: pid, Vaddr: va, Dev: text.Dev, Ino: text.Ino + 1, Off: text.Off + 0x100, Orig: 0x90})
	r := Restore(l.Live())
	if r.Restored != 4 || r.Skipped != 2 || r.Processes != 1 || len(r.Errors) != 0 {
		t.Errorf("Restore: %+v, want 4 restored, 2 skipped, 1 process", r)
	}
	mem.WriteAt(file[text.Off+0x100:text.Off+0x101], int64(va)) // undo the foreign one
	got := make([]byte, text.End-text.Start)
	if _, err := mem.ReadAt(got, int64(text.Start)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, file[text.Off:text.Off+uint64(len(got))]) {
		t.Error("text differs from the file after Restore")
	}
}

// TestRestoreJump: a jump site's entry whose byte 0 is an int3 gets its
// tail back, then byte 0; one whose jump is in place is left alone (its
// process runs on through the trampoline).
func TestRestoreJump(t *testing.T) {
	pid, text, file, mem := sleeper(t)
	l := create(t, 16)
	junk := []byte{0x11, 0x22, 0x33, 0x44}
	va := text.Start + 0x40
	off := text.Off + 0x40
	l.Add(Entry{Owner: pid, Pid: pid, Vaddr: va, Dev: text.Dev, Ino: text.Ino, Off: off, Orig: file[off]})
	if !l.SetTail(pid, va, file[off+1:off+5]) {
		t.Fatal("SetTail of a live entry failed")
	}
	mem.WriteAt(append([]byte{0xcc}, junk...), int64(va)) // int3, then the jump's tail
	va2, off2 := va+0x20, off+0x20
	l.Add(Entry{Owner: pid, Pid: pid, Vaddr: va2, Dev: text.Dev, Ino: text.Ino, Off: off2, Orig: file[off2]})
	l.SetTail(pid, va2, file[off2+1:off2+5])
	jump := append([]byte{0xe9}, junk...)
	mem.WriteAt(jump, int64(va2))
	if l.SetTail(pid, va+1, nil) {
		t.Error("SetTail of no entry succeeded")
	}
	r := Restore(l.Live())
	if r.Restored != 1 || r.Skipped != 1 {
		t.Errorf("Restore: %+v, want 1 restored, 1 skipped", r)
	}
	got := make([]byte, 5)
	mem.ReadAt(got, int64(va))
	if !bytes.Equal(got, file[off:off+5]) {
		t.Errorf("int3 site after Restore: % x, want % x", got, file[off:off+5])
	}
	mem.ReadAt(got, int64(va2))
	if !bytes.Equal(got, jump) {
		t.Errorf("jump site after Restore: % x, want it left: % x", got, jump)
	}
	mem.WriteAt(file[off2:off2+5], int64(va2))
}

// TestGrowth: past its first size the table doubles, to MaxSlots; entries
// written before and after the growth are all live in the guardian's view.
func TestGrowth(t *testing.T) {
	l := create(t, 8)
	for i := range 100 {
		if err := l.Add(Entry{Owner: 1, Pid: 1, Vaddr: uint64(i), Orig: byte(i)}); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	g, err := Open(dupFile(t, l.File()))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	live := g.Live()
	if len(live) != 100 || live[99].Orig != 99 || live[0].Vaddr != 0 {
		t.Fatalf("%d live entries after growth", len(live))
	}
	if !errors.Is(ErrFull, syscall.ENOSPC) {
		t.Error("ErrFull is not ENOSPC")
	}
}
