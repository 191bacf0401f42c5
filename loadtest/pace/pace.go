// Package pace is the fixed-rate schedule math shared by the load harness and the mock
// upstream: event i of a schedule at rate r is due at start + i/r, so a sender that fell
// behind catches up by the schedule instead of drifting, and a latency measured from the
// intended time includes every delay a stalled server caused (no coordinated omission).
//
// All functions are pure and safe for concurrent use.
package pace

import (
	"math"
	"time"
)

// Offset is the offset from the start of a schedule at rate per second at which event i
// (counting from 0) is due: i/rate seconds, rounded up to the nanosecond. A rate of zero
// or less makes every event due at once (offset 0).
func Offset(i uint64, rate float64) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(float64(i) * float64(time.Second) / rate))
}

// Due is how many events of a schedule at rate per second are due elapsed after its
// start: the events i (from 0) with Offset(i, rate) <= elapsed. Nothing is due before the
// start; a rate of zero or less makes no event due.
func Due(elapsed time.Duration, rate float64) uint64 {
	if elapsed < 0 || rate <= 0 {
		return 0
	}
	n := uint64(float64(elapsed) * rate / float64(time.Second))
	// Float rounding may land one off either way; settle it against Offset.
	for n > 0 && Offset(n, rate) > elapsed {
		n--
	}
	for Offset(n+1, rate) <= elapsed {
		n++
	}
	return n + 1
}

// Count is how many events a schedule at rate per second sends in d: the events due
// strictly before d.
func Count(d time.Duration, rate float64) uint64 {
	if d <= 0 || rate <= 0 {
		return 0
	}
	return Due(d-1, rate)
}
