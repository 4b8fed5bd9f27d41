package ratelimit

import "time"

// bucket is one token bucket. level is in units of 1/w of a unit (w: the
// window in milliseconds), so that each elapsed millisecond adds exactly
// capacity to it; full is capacity·w. The Lua script in tenancy/redislimit
// implements the same arithmetic: keep them in step.
type bucket struct {
	level    int64 // may be negative (debt), never below −full
	last     int64 // unix milliseconds of the last refill
	capacity int64
}

// newBucket returns a full bucket as of now.
func newBucket(now, w, capacity int64) bucket {
	return bucket{level: capacity * w, last: now, capacity: capacity}
}

// advance adapts b to capacity (what was used stays used) and refills it up
// to now. A clock that went back refills nothing.
func (b *bucket) advance(now, w, capacity int64) {
	if b.capacity != capacity {
		b.level += (capacity - b.capacity) * w
		b.capacity = capacity
	}
	full := capacity * w
	if el := now - b.last; el > 0 {
		// From the lowest level (−full), 2w milliseconds refill completely;
		// capping el there keeps el·capacity exact.
		b.level += min(el, 2*w) * capacity
		b.last = now
	}
	b.level = min(max(b.level, -full), full)
}

// take removes n·w; the caller checked that it fits.
func (b *bucket) take(n, w int64) { b.level -= n * w }

// adjust adds delta units (negative: a refund), clamped to [−full, full].
func (b *bucket) adjust(delta, w int64) {
	delta = min(max(delta, -2*b.capacity), 2*b.capacity)
	full := b.capacity * w
	b.level = min(max(b.level-delta*w, -full), full)
}

// wait returns how long until n units fit, in milliseconds; tooLarge when
// n exceeds the capacity.
func (b *bucket) wait(n, w int64) (ms int64, tooLarge bool) {
	if n > b.capacity {
		return 0, true
	}
	need := n*w - b.level
	if need <= 0 {
		return 0, false
	}
	return ceilDiv(need, b.capacity), false
}

// state returns the bucket's public state.
func (b *bucket) state(w int64) State {
	full := b.capacity * w
	return State{
		Limit:     b.capacity,
		Remaining: max(b.level, 0) / w,
		Reset:     time.Duration(ceilDiv(full-b.level, b.capacity)) * time.Millisecond,
	}
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}
