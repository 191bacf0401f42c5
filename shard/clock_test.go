package shard

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewClock()
		assert.Equal(t, time.Now().UnixNano(), c.Now(), "starts at time.Now()")
		for _, d := range []time.Duration{time.Nanosecond, 37 * time.Millisecond, time.Second, time.Hour} {
			time.Sleep(d)
			assert.Equal(t, time.Now().UnixNano(), c.Now(), "follows time without a goroutine (after %v)", d)
		}
	})
}

// TestClockReal checks the clock against the wall clock on real time: the two
// agree within a scheduling delay, and the clock never goes back.
func TestClockReal(t *testing.T) {
	c := NewClock()
	prev := c.Now()
	for range 1000 {
		before := time.Now().UnixNano()
		now := c.Now()
		after := time.Now().UnixNano()
		assert.GreaterOrEqual(t, now, prev, "monotonic")
		assert.InDelta(t, float64(before+after)/2, float64(now), float64(50*time.Millisecond))
		prev = now
	}
}
