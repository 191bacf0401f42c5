package shard

import "time"

// DefaultClockTick is the resolution of a Clock created with tick 0.
const DefaultClockTick = 100 * time.Millisecond

// Clock is a coarse process clock for last-activity stamps, in unix
// nanoseconds: the wall time when the Clock was made plus the monotonic time
// since, rounded down to a multiple of the tick. The rounding keeps a stamp
// that is written on every request or event (a session's last activity, the
// upstream's last success) unchanged for a tick, so it is stored at most once
// per tick and its cache line is not written by every core on every request.
//
// A read is one monotonic clock read (about half of what time.Now costs, which
// also reads the wall clock; BenchmarkClockNow) and needs no goroutine to keep
// it fresh, so an idle process is not woken to update it. A step of the wall
// clock after NewClock does not move it (like a timer, it follows the
// monotonic clock). It is safe for concurrent use.
type Clock struct {
	_        noCopy
	base     time.Time // carries its monotonic reading
	baseUnix int64
	tick     time.Duration
}

// NewClock returns a Clock with the resolution tick that starts at
// time.Now(). tick <= 0 means DefaultClockTick.
func NewClock(tick time.Duration) *Clock {
	if tick <= 0 {
		tick = DefaultClockTick
	}
	now := time.Now()
	return &Clock{base: now, baseUnix: now.UnixNano(), tick: tick}
}

// Tick returns the resolution: Now is at most one tick behind time.Now.
func (c *Clock) Tick() time.Duration { return c.tick }

// Now returns the current time in unix nanoseconds, rounded down to the tick.
func (c *Clock) Now() int64 {
	d := time.Since(c.base)
	return c.baseUnix + int64(d-d%c.tick)
}
