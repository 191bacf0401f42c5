package shard

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewClock(0)
		assert.Equal(t, DefaultClockTick, c.Tick())
		start := time.Now().UnixNano()
		assert.Equal(t, start, c.Now(), "starts at time.Now()")

		time.Sleep(DefaultClockTick - 1)
		assert.Equal(t, start, c.Now(), "moves in whole ticks")
		time.Sleep(1)
		assert.Equal(t, start+int64(DefaultClockTick), c.Now())

		// Without a goroutine behind it, it follows time, at most a tick behind.
		for range 25 {
			time.Sleep(37 * time.Millisecond)
			age := time.Now().UnixNano() - c.Now()
			assert.GreaterOrEqual(t, age, int64(0))
			assert.Less(t, age, int64(DefaultClockTick), "at most one tick old")
			assert.Zero(t, (c.Now()-start)%int64(DefaultClockTick), "a whole number of ticks")
		}
		time.Sleep(time.Hour)
		elapsed := time.Now().UnixNano() - start
		assert.Equal(t, start+elapsed-elapsed%int64(DefaultClockTick), c.Now())
	})
}

func TestNewClockTick(t *testing.T) {
	tests := []struct {
		tick, want time.Duration
	}{
		{0, DefaultClockTick},
		{-time.Second, DefaultClockTick},
		{time.Millisecond, time.Millisecond},
	}
	for _, tt := range tests {
		c := NewClock(tt.tick)
		assert.Equal(t, tt.want, c.Tick())
		assert.InDelta(t, time.Now().UnixNano(), c.Now(), float64(time.Second))
	}
}

// TestClockReal checks the clock against the wall clock on real time: it is
// behind by less than a tick plus a scheduling delay, and never goes back.
func TestClockReal(t *testing.T) {
	c := NewClock(time.Millisecond)
	prev := c.Now()
	for range 1000 {
		before := time.Now().UnixNano()
		now := c.Now()
		assert.GreaterOrEqual(t, now, prev, "monotonic")
		assert.InDelta(t, float64(before), float64(now), float64(50*time.Millisecond))
		prev = now
	}
}
