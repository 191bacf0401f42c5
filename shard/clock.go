package shard

import "time"

// Clock is the process clock for last-activity stamps and deadlines, in unix
// nanoseconds: the wall time when the Clock was made plus the monotonic time
// since. A read is one monotonic clock read (about half of what time.Now costs,
// which also reads the wall clock; BenchmarkClockNow) and needs no goroutine to
// keep it fresh, so an idle process is not woken to update it. A step of the
// wall clock after NewClock does not move it (like a timer, it follows the
// monotonic clock). It is safe for concurrent use.
type Clock struct {
	_        noCopy
	base     time.Time // carries its monotonic reading
	baseUnix int64
}

// NewClock returns a Clock that starts at time.Now().
func NewClock() *Clock {
	now := time.Now()
	return &Clock{base: now, baseUnix: now.UnixNano()}
}

// Now returns the current time in unix nanoseconds.
func (c *Clock) Now() int64 { return c.baseUnix + int64(time.Since(c.base)) }
