package harness

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOpenLoopKeepsTheSchedule: a stalled operation delays the ones after it on its
// worker, but each keeps its intended time on the schedule (start + i/rate), so the
// latencies measured from it hold the stall (no coordinated omission), and no
// operation is dropped; the warm-up and the time after the end are not measured.
func TestOpenLoopKeepsTheSchedule(t *testing.T) {
	r := &runner{cfg: Config{}, rec: NewRecorder()}
	start := time.Now()
	w := &window{start: start, measureFrom: start.Add(20 * time.Millisecond), end: start.Add(100 * time.Millisecond)}
	r.w.Store(w)
	const stall = 150 * time.Millisecond
	var mu sync.Mutex
	intended := map[uint64]time.Time{}
	ran := map[uint64]time.Time{}
	r.openLoop(context.Background(), 100, 1, func(_ *Lane, i uint64, at time.Time) {
		mu.Lock()
		intended[i], ran[i] = at, time.Now()
		mu.Unlock()
		if i == 0 {
			time.Sleep(stall)
		}
	})
	require.Len(t, intended, 10, "every operation due in the window runs")
	for i := uint64(0); i < 10; i++ {
		assert.Equal(t, start.Add(time.Duration(i)*10*time.Millisecond), intended[i], "op %d's intended time", i)
		if i > 0 {
			assert.GreaterOrEqual(t, ran[i].Sub(intended[i]), stall-time.Duration(i)*10*time.Millisecond,
				"op %d ran after the stall, and its latency from the intended time holds it", i)
		}
	}
	assert.False(t, r.measured(start.Add(19*time.Millisecond)), "warm-up")
	assert.True(t, r.measured(start.Add(20*time.Millisecond)))
	assert.True(t, r.measured(start.Add(99*time.Millisecond)))
	assert.False(t, r.measured(start.Add(100*time.Millisecond)), "after the end")
}
