//go:build !linux

package load

import "time"

// sleepPrecise sleeps for d; only Linux has the precise version.
func sleepPrecise(d time.Duration) { time.Sleep(d) }
