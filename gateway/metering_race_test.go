//go:build race

package gateway

// raceEnabled: sync.Pool drops items on purpose under the race detector,
// so allocation counts are not checked.
const raceEnabled = true
