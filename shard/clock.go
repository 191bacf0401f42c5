package shard

import (
	"context"
	"sync/atomic"
	"time"
)

// DefaultClockTick is the update period of a Clock created with tick 0.
const DefaultClockTick = 100 * time.Millisecond

// Clock is a coarse process clock for last-activity stamps: the hot path reads
// an atomic instead of calling time.Now. It is safe for concurrent use.
type Clock struct {
	_    noCopy
	now  atomic.Int64 // unix nanoseconds of the last update
	tick time.Duration
}

// NewClock returns a Clock that reads time.Now() now and, once Run is
// started, every tick. tick <= 0 means DefaultClockTick.
func NewClock(tick time.Duration) *Clock {
	if tick <= 0 {
		tick = DefaultClockTick
	}
	c := &Clock{tick: tick}
	c.now.Store(time.Now().UnixNano())
	return c
}

// Tick returns the update period.
func (c *Clock) Tick() time.Duration { return c.tick }

// Now returns the time of the last update in unix nanoseconds: at most one
// tick old while Run runs. It is one atomic load.
func (c *Clock) Now() int64 { return c.now.Load() }

// Run updates the clock every tick until ctx is done, then returns. The caller
// owns the goroutine that runs it; run at most one Run per Clock.
func (c *Clock) Run(ctx context.Context) {
	t := time.NewTicker(c.tick)
	defer t.Stop()
	c.now.Store(time.Now().UnixNano())
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.now.Store(time.Now().UnixNano())
		}
	}
}
