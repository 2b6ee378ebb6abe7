package manager

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
)

// cgroup= filters: a probe limited to the processes of a cgroup (v2) and
// the cgroups below it — a container, a systemd unit. PATH is the cgroup's
// directory (/sys/fs/cgroup/system.slice/foo.service, or under a hybrid
// system's /sys/fs/cgroup/unified), or its path as /proc/PID/cgroup shows
// it (/system.slice/foo.service). A process is judged, like every filter,
// when its mappings are read (attach, exec, fork, dlopen): one that joins
// or leaves the cgroup later is judged again at its next exec.

// cgroup2Root returns the mount point of the cgroup v2 hierarchy.
func cgroup2Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - TYPE SOURCE SUPER
		l := sc.Text()
		pre, post, ok := strings.Cut(l, " - ")
		fs := strings.Fields(pre)
		if ok && len(fs) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			return fs[4], nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted")
}

// parseCgroup turns PATH into a cgroup path ("/a/b") of an existing cgroup.
func parseCgroup(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("cgroup %q: give an absolute path (/sys/fs/cgroup/... or /SLICE/...)", p)
	}
	root, err := cgroup2Root()
	if err != nil {
		return "", err
	}
	p = path.Clean(p)
	cg := p
	if rel, ok := strings.CutPrefix(p, root); ok && (rel == "" || rel[0] == '/') {
		cg = rel
	}
	if cg == "" {
		cg = "/"
	}
	if st, err := os.Stat(path.Join(root, cg)); err != nil || !st.IsDir() {
		return "", fmt.Errorf("cgroup %q: no such cgroup (under %s)", p, root)
	}
	return cg, nil
}

// pidCgroup returns the cgroup v2 path of process pid ("0::PATH").
func pidCgroup(pid int) (string, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p, true
		}
	}
	return "", false
}

// inCgroups reports whether process pid is in one of cgs or below it.
func inCgroups(pid int, cgs []string) bool {
	p, ok := pidCgroup(pid)
	if !ok {
		return false
	}
	for _, cg := range cgs {
		if cg == "/" || p == cg || strings.HasPrefix(p, cg+"/") {
			return true
		}
	}
	return false
}
