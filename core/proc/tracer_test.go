package proc

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uprobefs/uprobefs/internal/procfs"
)

// rawHandler traces one process and swallows its SIGTRAPs: the tracer's
// bare round trip.
type rawHandler struct {
	threads map[int]bool
	traps   int
	exited  chan struct{}
	pid     int
	mode    string
	statF   *os.File
	buf     []byte
	cpu     int
	moves   int
}

func (h *rawHandler) place(tid int) {
	switch h.mode {
	case "follow":
		if h.statF == nil {
			h.statF, _ = os.Open("/proc/" + itoa(h.pid) + "/task/" + itoa(tid) + "/stat")
			h.buf = make([]byte, 1024)
			h.cpu = -1
		}
		c, err := procfs.ThreadCPU(h.statF, h.buf)
		if err == nil && c != h.cpu {
			var set unix.CPUSet
			set.Set(c)
			unix.SchedSetaffinity(0, &set)
			h.cpu = c
			h.moves++
		}
	}
}

func (h *rawHandler) known(tid int) bool { return h.threads[tid] }
func (h *rawHandler) held(tid int) bool  { return false }
func (h *rawHandler) flush()             {}
func (h *rawHandler) tids() []int {
	var out []int
	for t := range h.threads {
		out = append(out, t)
	}
	return out
}
func (h *rawHandler) event(tid int, st unix.WaitStatus) {
	switch {
	case st.Exited() || st.Signaled():
		delete(h.threads, tid)
		if tid == h.pid {
			close(h.exited)
		}
	case st.Stopped():
		sig := int(st.StopSignal())
		if st.TrapCause() > 0 || sig == int(unix.SIGTRAP) {
			if st.TrapCause() <= 0 {
				h.traps++
				h.place(tid)
			}
			ptraceCont(tid, 0)
			return
		}
		ptraceCont(tid, sig)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestTracerRaw(t *testing.T) {
	for _, mode := range []string{"none"} {
		t.Run(mode, func(t *testing.T) { testTracerRaw(t, mode) })
	}
}

func testTracerRaw(t *testing.T, mode string) {
	bin := buildOnce(t, "int3loop", "-O2")
	tr, err := startTracer(&rawHandler{})
	if err != nil {
		t.Fatal(err)
	}
	h := &rawHandler{threads: map[int]bool{}, exited: make(chan struct{}), mode: mode}
	tr.do(func() { tr.h = h }) // the tracer reads h between requests
	if mode == "pin0" || mode == "both0" || mode == "split" {
		tr.do(func() {
			var set unix.CPUSet
			set.Set(0)
			unix.SchedSetaffinity(0, &set)
		})
	}
	defer tr.close(nil)
	const n = 5000
	var f *fixture
	switch mode {
	case "both0":
		f = startFixture(t, "/usr/bin/taskset", "-c", "0", bin, "5000")
	case "split":
		f = startFixture(t, "/usr/bin/taskset", "-c", "1", bin, "5000")
	default:
		f = startFixture(t, bin, "5000")
	}
	h.pid = f.Pid
	var serr error
	if err := tr.do(func() {
		serr = ptraceSeize(f.Pid)
		h.threads[f.Pid] = serr == nil
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	start := time.Now()
	f.Go()
	out, code := f.Wait(30 * time.Second)
	el := time.Since(start)
	select {
	case <-h.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("no exit event")
	}
	var traps int
	tr.do(func() { traps = h.traps })
	if code != 0 || !strings.Contains(out, "done 5000") || traps != n {
		t.Fatalf("code %d out %q traps %d", code, out, traps)
	}
	t.Logf("%s: %d traps in %v: %.2f µs/trap (moves %d)", mode, n, el, float64(el.Microseconds())/n, h.moves)
}
