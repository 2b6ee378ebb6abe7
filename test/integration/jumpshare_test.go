package integration

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/uprobefs/uprobefs/internal/testfix"
)

// TestJumpSharedSite: consumers sharing one site. Two counting probes of
// j_func share its jump and both count every call; a third with fetch
// arguments, then a return probe, move the site to the trap path (status
// says why) while the counts stay exact; without them it is a jump again.
func TestJumpSharedSite(t *testing.T) {
	d, P, j := startJumpRig(t)
	const T, N, n = 8, 100000, 500
	d.must("printf 'a=j_func\\nb=j_func\\n' > " + P + "/probes")
	d.waitMode(P+"/a", j.pid(), modeJump)
	d.waitMode(P+"/b", j.pid(), modeJump)
	j.batch(T, N)
	d.wantHits(P+"/a", T*N)
	d.wantHits(P+"/b", T*N)

	d.must("echo 'p:c j_func %di' > " + P + "/probes")
	d.waitMode(P+"/a", j.pid(), "trap: fetch arguments")
	j.batch(T, n)
	d.wantHits(P+"/a", T*(N+n))
	d.wantHits(P+"/b", T*(N+n))
	d.wantHits(P+"/c", T*n)
	d.must("rmdir " + P + "/c")
	d.waitMode(P+"/a", j.pid(), modeJump)

	d.must("echo 'r:r j_func' > " + P + "/probes")
	d.waitMode(P+"/a", j.pid(), "trap: a return probe")
	j.batch(T, n)
	d.wantHits(P+"/a", T*(N+2*n))
	d.wantHits(P+"/r", T*n)
	d.must("rmdir " + P + "/r")
	d.waitMode(P+"/b", j.pid(), modeJump)
	j.batch(T, N)
	d.wantHits(P+"/a", T*(2*N+2*n))
	d.wantHits(P+"/b", T*(2*N+2*n))
	j.finish()
}

// TestJumpRefused: j_loop branches back into the bytes a jump at its entry
// would displace: its probe stays on the trap path, status gives the
// reason, and the count is exact.
func TestJumpRefused(t *testing.T) {
	d, P, j := startJumpRig(t)
	off := testfix.SymOff(t, j.bin, "j_loop")
	const T, N = 8, 1000
	d.must("echo j_loop > " + P + "/probes")
	d.waitMode(P+"/j_loop", j.pid(), "trap: branch into the displaced range from this function (j_loop+0x8 to +2)")
	j.wantByte(off, 0xcc, "j_loop")
	j.send(fmt.Sprintf("L %d %d", T, N))
	j.expect(fmt.Sprintf("sum %d", 6*T*N))
	d.wantHits(P+"/j_loop", T*N)
	j.finish()
}

// TestJumpInterior: probes at j_func and at j_func+1, inside the bytes a
// jump at j_func displaces: j_func stays on the trap path while the other
// is there (status says so) and both count every call; once j_func+1 is
// removed, j_func stays a trap in that process (a thread may have stopped
// at j_func+1 and be in a signal handler: it would return into the jmp's
// bytes) and still counts every call. In another process where j_func is
// a live jump site, j_func+1 registered inside the jmp counts every call
// from the moment its write returns.
func TestJumpInterior(t *testing.T) {
	d, P, j := startJumpRig(t)
	const T, N = 8, 1000
	d.must("printf 'j_func\\nj_func+1\\n' > " + P + "/probes")
	const why = "trap: another breakpoint at 0x"
	mode, _ := d.waitModeMatch(P+"/j_func", j.pid(), why+"...", func(m string) bool { return strings.HasPrefix(m, why) })
	inner, vaddr := d.waitModeMatch(P+"/j_func+0x1", j.pid(), "installed", func(m string) bool { return m != "" })
	if !strings.Contains(mode, vaddr+" ") {
		t.Errorf("j_func: %q does not name j_func+1's vaddr %s", mode, vaddr)
	}
	t.Logf("j_func: %s; j_func+1: %s", mode, inner)
	j.batch(T, N)
	d.wantHits(P+"/j_func", T*N)
	d.wantHits(P+"/j_func+0x1", T*N)
	d.must("rmdir " + P + "/j_func+0x1")
	was := "trap: a breakpoint was at " + vaddr + ","
	d.waitModeMatch(P+"/j_func", j.pid(), was+"...", func(m string) bool { return strings.HasPrefix(m, was) })
	j.batch(T, N)
	d.wantHits(P+"/j_func", 2*T*N)
	j.finish()

	// At once: the registration returns with its breakpoint in, the jmp
	// under it undone.
	d2, P2, j2 := startJumpRig(t)
	d2.must("echo j_func > " + P2 + "/probes")
	d2.waitMode(P2+"/j_func", j2.pid(), modeJump)
	j2.batch(T, N)
	d2.must("echo j_func+1 > " + P2 + "/probes")
	j2.batch(T, N)
	d2.wantHits(P2+"/j_func", 2*T*N)
	d2.wantHits(P2+"/j_func+0x1", T*N)
	d2.waitModeMatch(P2+"/j_func", j2.pid(), why+"...", func(m string) bool { return strings.HasPrefix(m, why) })
	j2.finish()
}

// TestJumpShutdown: SIGTERM while 8 threads run through a jump site: the
// daemon exits 0, the text is the file's again, the process is let go and
// its sum is right.
func TestJumpShutdown(t *testing.T) {
	d, P, j := startJumpRig(t)
	off := testfix.SymOff(t, j.bin, "j_func")
	d.probeJump(P, "j_func", j)
	j.spin(8)
	d.waitHitsAbove(P+"/j_func", 100000)
	if code := d.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("uprobefs exit status %d after SIGTERM", code)
	}
	j.checkOriginal(off)
	if pid := j.fx().tracerPid(); pid != 0 {
		t.Fatalf("still traced by %d after the shutdown", pid)
	}
	j.spinDone("after the shutdown")
	j.finish()
}

// TestJumpFilter: a probe limited to one of two processes (pid=) is a jump
// site there only; the other is not traced at all; the count is exactly
// the selected process's calls.
func TestJumpFilter(t *testing.T) {
	d, P, a := startJumpRig(t)
	const T, N = 8, 100000
	b := startJump(t, a.bin)
	d.must(fmt.Sprintf("echo 'j_func pid=%d' > %s/probes", a.pid(), P))
	d.waitMode(P+"/j_func", a.pid(), modeJump)
	d.wantMode(P+"/j_func", b.pid(), "", "(unselected)")
	if pid := b.fx().tracerPid(); pid != 0 {
		t.Fatalf("unselected pid %d traced by %d", b.pid(), pid)
	}
	a.batch(T, N)
	b.batch(T, N)
	a.batch(T, N)
	d.wantHits(P+"/j_func", 2*T*N)
	a.finish()
	b.finish()
}

// TestJumpDlopen: a library (testdata/jumplib.c) is dlopened, its l_func
// becomes a jump site, is called, and the library is dlclosed; then
// another build of it, whose l_other lies where l_func was, is loaded at
// the same address, and so on, 3 times each. Every load gets its own
// jump site, the hits of each file are exactly its l_func calls, and no
// stale jmp or trampoline is left in the other build (l_other's sum would
// be wrong: it starts like l_func).
func TestJumpDlopen(t *testing.T) {
	d := startDaemon(t)
	const src = "testdata/jumplib.c"
	libs := []string{
		testfix.Copy(t, testfix.CC(t, src, "-shared", "-fPIC", "-O2", "-fcf-protection=none")),
		testfix.Copy(t, testfix.CC(t, src, "-shared", "-fPIC", "-O2", "-fcf-protection=none", "-DSWAP")),
	}
	const T, N = 8, 50000
	for _, l := range libs {
		d.must("echo l_func > " + d.in(l) + "/probes")
	}
	j := startJump(t, jumpFixture(t))
	calls := make([]uint64, 2)
	at := map[string][]string{} // address -> "lib:function" loaded there
	for round := range 6 {
		i := round % 2
		L := d.in(libs[i])
		j.send("o " + libs[i])
		var fn, other string
		if _, err := fmt.Sscanf(j.line(), "open %s %s", &fn, &other); err != nil {
			t.Fatalf("open: %v", err)
		}
		at[fn] = append(at[fn], fmt.Sprintf("%d:l_func", i))
		at[other] = append(at[other], fmt.Sprintf("%d:l_other", i))
		if v := d.waitMode(L+"/l_func", j.pid(), modeJump); v != fn {
			t.Fatalf("round %d: site at %s, l_func at %s", round, v, fn)
		}
		j.send(fmt.Sprintf("c %d %d", T, N))
		var sum, want uint64
		l := j.line()
		if _, err := fmt.Sscanf(l, "calls sum %d want %d", &sum, &want); err != nil || sum != want {
			t.Fatalf("round %d (library %d): %q, want calls sum S want S", round, i, l)
		}
		calls[i] += T * N
		for k := range libs {
			d.wantHits(d.in(libs[k])+"/l_func", calls[k])
		}
		j.send("u")
		j.expect("closed")
		d.wantMode(L+"/l_func", j.pid(), "", fmt.Sprintf("in round %d after dlclose", round))
	}
	reused := 0
	for a, who := range at {
		if strings.Contains(strings.Join(who, " "), ":l_func") && strings.Contains(strings.Join(who, " "), ":l_other") {
			reused++
			t.Logf("%s held %v", a, who)
		}
	}
	if reused == 0 {
		t.Errorf("no address held l_func of one build and l_other of the other (dlopen did not reuse the address): %v", at)
	}
	j.finish()
}
