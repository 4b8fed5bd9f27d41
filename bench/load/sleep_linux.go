package load

import (
	"syscall"
	"time"
)

// sleepPrecise sleeps for d with nanosleep(2), which wakes within tens of
// microseconds, where a Go timer may wake a millisecond late (the runtime
// waits for timers in whole milliseconds when it has nothing else to do).
// It blocks an OS thread, so callers use it only for short waits.
func sleepPrecise(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for ts.Sec > 0 || ts.Nsec > 0 {
		var rem syscall.Timespec
		if err := syscall.Nanosleep(&ts, &rem); err != syscall.EINTR {
			return
		}
		ts = rem // interrupted by a signal (the runtime's preemption): sleep the rest
	}
}
