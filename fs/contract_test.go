package fs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestDirProbesIsEISDIR: DIR/probes of a directory is EISDIR for every
// access, with and without O_CREAT, and each refusal is logged.
func TestDirProbesIsEISDIR(t *testing.T) {
	f := mountTest(t)
	p := filepath.Join(f.mnt, "etc/probes")
	for _, c := range []struct {
		name string
		open func() error
	}{
		{"read", func() error { _, err := os.ReadFile(p); return err }},
		{"write", func() error { fd, err := os.OpenFile(p, os.O_WRONLY, 0); fd.Close(); return err }},
		{"append", func() error { fd, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0); fd.Close(); return err }},
		{"create", func() error {
			fd, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			fd.Close()
			return err
		}},
		{"stat", func() error { _, err := os.Stat(p); return err }},
	} {
		before := len(f.m.Errors())
		if err := c.open(); !errors.Is(err, syscall.EISDIR) {
			t.Errorf("%s of DIR/probes: %v, want EISDIR", c.name, err)
			continue
		}
		errs := f.m.Errors()
		if len(errs) <= before || errs[len(errs)-1].Errno != syscall.EISDIR {
			t.Errorf("%s of DIR/probes: no EISDIR line in the error log", c.name)
		}
	}
}

// TestZeroByteWrite: a write(2) of 0 bytes never reaches the filesystem
// (the kernel returns 0): it succeeds and changes nothing, as the errno
// table says. A write of only blank lines is EINVAL.
func TestZeroByteWrite(t *testing.T) {
	f := mountTest(t)
	fd, err := os.OpenFile(filepath.Join(f.mnt, "bin/target/probes"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	if n, err := syscall.Write(int(fd.Fd()), nil); n != 0 || err != nil {
		t.Fatalf("write of 0 bytes = %d, %v; want 0, nil", n, err)
	}
	if len(f.m.Errors()) != 0 || len(f.m.All()) != 0 {
		t.Fatalf("a 0-byte write changed something: errors %v, probes %v", f.m.Errors(), f.m.All())
	}
	if _, err := fd.Write([]byte("\n\n")); !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("write of blank lines: %v, want EINVAL", err)
	}
}
