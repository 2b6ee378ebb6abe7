package testfix

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"os/user"
	"strconv"
	"testing"
)

// User creates a throwaway unprivileged system user (no home, no login
// shell) for tests of what another user may do, and removes it in tb's
// cleanup. It returns the user's uid and gid. It needs root and useradd;
// the test fails without them.
func User(tb testing.TB) (uid, gid int) {
	tb.Helper()
	var b [4]byte
	rand.Read(b[:])
	name := "uprobefs-t" + hex.EncodeToString(b[:])
	if out, err := exec.Command("useradd", "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		tb.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			tb.Errorf("userdel %s: %v: %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		tb.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}
