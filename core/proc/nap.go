package proc

import (
	"time"

	"golang.org/x/sys/unix"
)

// nap sleeps about d on the calling thread with nanosleep. time.Sleep
// cannot serve the tracer's short polls: the Go runtime waits for timers
// in epoll with a millisecond timeout, so on an idle machine a 50 µs
// time.Sleep lasts ~1.1 ms (measured here), and every poll for a stop that
// comes after a few microseconds cost a millisecond. The tracer thread's
// timer slack is lowered to 1 µs (tracer.run) so that the kernel does not
// round the nap up by its default 50 µs either.
func nap(d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	for unix.Nanosleep(&ts, &ts) == unix.EINTR {
	}
}
