package gateway

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestSparseLog: the first event is told at once, the others of its
// interval by the next line, with their number; concurrent events make one
// line.
func TestSparseLog(t *testing.T) {
	l := sparseLog{every: 10 * time.Second}
	start := int64(1_000_000_000)
	since, ok := l.event(start)
	assert.True(t, ok)
	assert.EqualValues(t, 1, since)
	for i := 0; i < 5; i++ {
		_, ok := l.event(start + int64(i)*int64(time.Second))
		assert.False(t, ok, "within the interval")
	}
	since, ok = l.event(start + int64(10*time.Second))
	assert.True(t, ok)
	assert.EqualValues(t, 6, since, "the five held back and this one")

	var wg sync.WaitGroup
	var mu sync.Mutex
	lines := 0
	at := start + int64(30*time.Second)
	for range 50 {
		wg.Go(func() {
			if _, ok := l.event(at); ok {
				mu.Lock()
				lines++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 1, lines)
}
