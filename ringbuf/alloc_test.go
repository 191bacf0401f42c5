//go:build !race

package ringbuf

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAllocSteadyState is the allocation budget of the hot path: once a
// ring's slot array and buffers are warm, push + drain allocate nothing.
func TestAllocSteadyState(t *testing.T) {
	msg := make([]byte, 150)
	wbuf := make([]byte, 0, 4096)
	copyOut := func(_ uint64, data []byte) bool {
		if len(wbuf)+len(data) > cap(wbuf) {
			return false
		}
		wbuf = append(wbuf, data...)
		return true
	}

	tests := []struct {
		name  string
		cfg   Config
		batch int
		class Class
		key   func(i int) uint64
	}{
		{"one droppable", Config{}, 1, Droppable, nil},
		{"one must-deliver", Config{}, 1, MustDeliver, nil},
		{"batch of 16", Config{}, 16, Droppable, nil},
		{"coalescing keys", Config{}, 16, Droppable, func(i int) uint64 { return uint64(i%4 + 1) }},
		{"drop-oldest under backlog", Config{Capacity: 8, Policy: DropOldest}, 32, Droppable, nil},
		{"drop-newest under backlog", Config{Capacity: 8, Policy: DropNewest}, 32, Droppable, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(tt.cfg)
			require.NoError(t, err)
			var after uint64
			round := func() {
				for i := range tt.batch {
					var key uint64
					if tt.key != nil {
						key = tt.key(i)
					}
					if _, _, err := r.Push(tt.class, key, msg); err != nil {
						t.Fatal(err)
					}
				}
				for {
					wbuf = wbuf[:0]
					last, _, err := r.Next(after, copyOut)
					if err != nil {
						t.Fatal(err)
					}
					if last == after {
						break
					}
					after = last
				}
			}
			// Warm up: grow the slot array to full size and fill every buffer.
			for range 2 * r.Limits().HardCapacity {
				round()
			}
			assert.Zero(t, testing.AllocsPerRun(1000, round))
		})
	}

	t.Run("push after close", func(t *testing.T) {
		r, err := New(Config{})
		require.NoError(t, err)
		r.Close()
		assert.Zero(t, testing.AllocsPerRun(100, func() {
			_, _, _ = r.Push(Droppable, 0, msg)
			_, _, _ = r.Next(0, copyOut)
		}))
	})
}

// TestAllocIdleRing checks that an idle ring stays well under 1 KB.
func TestAllocIdleRing(t *testing.T) {
	var rings []*Ring
	avg := testing.AllocsPerRun(100, func() {
		r, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		rings = append(rings[:0], r)
	})
	assert.LessOrEqual(t, avg, 2.0, "the Ring and its wake channel")
	const n = 1000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		r, _ := New(Config{})
		rings = append(rings[:0], r)
	}
	runtime.ReadMemStats(&after)
	perRing := (after.TotalAlloc - before.TotalAlloc) / n
	assert.Less(t, perRing, uint64(1024))
	t.Logf("idle ring: %d B", perRing)
}

// TestAllocFillingRing is the allocation budget of a new stream's ring
// while it fills: every event takes a fresh slot until Capacity of them are
// retained, and their buffers are carved from shared blocks instead of
// allocated one by one (256 events of 150 bytes: 263 allocations before).
func TestAllocFillingRing(t *testing.T) {
	msg := make([]byte, 150)
	drop := func(uint64, []byte) bool { return true }
	allocs := testing.AllocsPerRun(20, func() {
		r, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		var after uint64
		for range r.Limits().Capacity {
			if _, _, err := r.Push(Droppable, 0, msg); err != nil {
				t.Fatal(err)
			}
			if after, _, err = r.Next(after, drop); err != nil {
				t.Fatal(err)
			}
		}
	})
	// The Ring, its slot array growing from 8 to 256 (6), and the blocks:
	// twice the retained bytes until 4 KiB, then one per 4 KiB (14 for 256
	// x 160 bytes): 21.
	assert.LessOrEqual(t, allocs, 24.0)
	t.Logf("allocations to fill a ring of 256: %.0f", allocs)
}
