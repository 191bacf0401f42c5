package shard

import (
	"context"
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

		time.Sleep(time.Second)
		assert.Equal(t, start, c.Now(), "does not move without Run")

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.Run(ctx)
		}()
		synctest.Wait()
		assert.Equal(t, time.Now().UnixNano(), c.Now(), "Run refreshes at once")

		for range 25 {
			time.Sleep(37 * time.Millisecond)
			synctest.Wait()
			age := time.Now().UnixNano() - c.Now()
			assert.GreaterOrEqual(t, age, int64(0))
			assert.Less(t, age, int64(DefaultClockTick), "at most one tick old")
		}

		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("Run did not return after cancel")
		}
		stopped := c.Now()
		time.Sleep(time.Second)
		assert.Equal(t, stopped, c.Now(), "stops after cancel")
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
