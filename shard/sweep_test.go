package shard

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestVisitSweepShard: visit sees every entry of the shard once, before
// expired is first asked about it, outside every lock (it creates and
// deletes entries of the same shard), and the sweep still removes exactly
// the expired entries.
func TestVisitSweepShard(t *testing.T) {
	s, err := New(Config[*sess]{Shards: 1})
	require.NoError(t, err)
	const n = 300
	ids := make([]string, n)
	for i := range ids {
		ids[i] = newID(t)
		require.NoError(t, s.Create(ids[i], &sess{n: i}))
	}
	visited := map[string]int{}
	asked := map[string]bool{}
	gone := map[string]bool{} // deleted by visit
	extra := 0
	removed := map[string]bool{}
	count := s.VisitSweepShard(0, func(id string, v *sess) {
		visited[id]++
		assert.False(t, asked[id], "visit comes before expired")
		if v.n >= 0 && v.n%10 == 0 { // an original entry: write to the same shard
			require.NoError(t, s.Create(newID(t), &sess{n: -1}))
			extra++
			if v.n%20 == 0 {
				if _, ok := s.Delete(ids[v.n+1]); ok { // visited or not yet
					gone[ids[v.n+1]] = true
				}
			}
		}
	}, func(id string, v *sess) bool {
		asked[id] = true
		return v.n >= 0 && v.n%3 == 0
	}, func(id string, _ *sess) { removed[id] = true })
	assert.Equal(t, len(removed), count)
	for i, id := range ids {
		if gone[id] {
			assert.LessOrEqual(t, visited[id], 1, "entry %d", i)
			assert.False(t, removed[id], "entry %d was deleted by visit", i)
			continue
		}
		assert.Equal(t, 1, visited[id], "entry %d visited once", i)
		assert.Equal(t, i%3 == 0, removed[id], "entry %d", i)
		_, ok := s.Get(id)
		assert.Equal(t, i%3 != 0, ok, "entry %d", i)
	}
	assert.Equal(t, n+extra-len(removed)-len(gone), s.Len())
}

func TestSweepShard(t *testing.T) {
	s, err := New(Config[*sess]{Shards: 4, OwnerLimit: 1000, OwnerOf: ownerOf})
	require.NoError(t, err)
	const n = 400
	ids := make([]string, n)
	for i := range ids {
		ids[i] = newID(t)
		require.NoError(t, s.Create(ids[i], &sess{owner: "o", n: i}))
	}
	expired := func(_ string, v *sess) bool { return v.n%3 == 0 }

	removed := map[string]int{}
	total := 0
	for i := range s.NumShards() {
		total += s.SweepShard(i, expired, func(id string, v *sess) {
			_, ok := s.Get(id)
			assert.False(t, ok, "onRemoved runs after the entry left the map")
			removed[id]++
			assert.True(t, expired(id, v))
		})
	}
	assert.Equal(t, len(removed), total)
	for i, id := range ids {
		_, ok := s.Get(id)
		if i%3 == 0 {
			assert.False(t, ok)
			assert.Equal(t, 1, removed[id], "onRemoved once per entry")
		} else {
			assert.True(t, ok, "unexpired entries stay")
			assert.Zero(t, removed[id])
		}
	}
	want := n - (n+2)/3
	assert.Equal(t, want, s.Len(), "sweep releases the global count")
	assert.Equal(t, want, s.OwnerCount("o"), "sweep releases the owner count")

	// A second sweep finds nothing; nil onRemoved is allowed.
	for i := range s.NumShards() {
		assert.Zero(t, s.SweepShard(i, expired, nil))
	}
}

func TestSweepShardRechecksUnderLock(t *testing.T) {
	s, err := New(Config[*sess]{Shards: 1})
	require.NoError(t, err)
	id := newID(t)
	require.NoError(t, s.Create(id, &sess{}))
	calls := 0
	// Expired on the first look, revived by the second: the entry stays.
	expired := func(string, *sess) bool {
		calls++
		return calls == 1
	}
	assert.Zero(t, s.SweepShard(0, expired, func(string, *sess) { t.Error("nothing is removed") }))
	assert.Equal(t, 2, calls)
	got, ok := s.Get(id)
	assert.True(t, ok)
	assert.NotNil(t, got)
	assert.Equal(t, 1, s.Len())
}

// TestSweepDeleteRace deletes every entry while sweeps remove them too: each
// entry is reported by exactly one of Delete and onRemoved.
func TestSweepDeleteRace(t *testing.T) {
	for round := range 5 {
		s, err := New(Config[*sess]{Shards: 2, OwnerOf: ownerOf})
		require.NoError(t, err)
		const n = 2000
		ids := make([]string, n)
		for i := range ids {
			ids[i] = newID(t)
			require.NoError(t, s.Create(ids[i], &sess{owner: "o"}))
		}
		reports := make([]atomic.Int32, n)
		index := make(map[string]int, n)
		for i, id := range ids {
			index[id] = i
		}
		var wg sync.WaitGroup
		for i := range s.NumShards() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.SweepShard(i, func(string, *sess) bool { return true }, func(id string, _ *sess) {
					reports[index[id]].Add(1)
				})
			}()
		}
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 2 {
					if _, ok := s.Delete(ids[(i+round*97)%n]); ok {
						reports[(i+round*97)%n].Add(1)
					}
				}
			}()
		}
		wg.Wait()
		for i := range reports {
			require.Equal(t, int32(1), reports[i].Load(), "entry %d reported %d times", i, reports[i].Load())
		}
		assert.Equal(t, 0, s.Len())
		assert.Equal(t, 0, s.OwnerCount("o"))
	}
}

func TestSweepSchedule(t *testing.T) {
	tests := []struct {
		every    time.Duration
		n        int
		tick     time.Duration
		per      int
		maxRound time.Duration
	}{
		{time.Second, 64, 100 * time.Millisecond, 7, time.Second},          // ten wake-ups a second, not 64
		{10 * time.Second, 64, 10 * time.Second / 64, 1, 10 * time.Second}, // one shard per tick when ticks are long enough
		{4 * time.Second, 4, time.Second, 1, 4 * time.Second},
		{time.Second, 1, time.Second, 1, time.Second},
		{time.Second, MaxShards, 100 * time.Millisecond, 6554, time.Second},
		{100 * time.Microsecond, 64, 100 * time.Microsecond, 64, 100 * time.Microsecond},
	}
	for _, tt := range tests {
		tick, per := sweepSchedule(tt.every, tt.n)
		assert.Equal(t, tt.per, per, "%v/%d", tt.every, tt.n)
		assert.InDelta(t, float64(tt.tick), float64(tick), float64(time.Microsecond), "%v/%d", tt.every, tt.n)
		rounds := (tt.n + per - 1) / per
		assert.LessOrEqual(t, time.Duration(rounds)*tick, tt.maxRound)
	}
}

// TestSweepLoop checks with a fake clock that SweepLoop sweeps one shard per
// every/NumShards, in order, and returns when its context is cancelled.
func TestSweepLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(Config[*sess]{Shards: 4})
		require.NoError(t, err)
		perShard := make([]int, s.NumShards())
		for range 200 {
			id := newID(t)
			perShard[s.ShardOf(id)]++
			require.NoError(t, s.Create(id, &sess{}))
		}
		var mu sync.Mutex
		seen := map[int]int{}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.SweepLoop(ctx, 4*time.Second, func(string, *sess) bool { return true }, func(id string, _ *sess) {
				mu.Lock()
				seen[s.ShardOf(id)]++
				mu.Unlock()
			})
		}()

		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		assert.Equal(t, 200, s.Len(), "nothing swept before the first tick")
		remaining := 200
		for i := range s.NumShards() {
			time.Sleep(time.Second)
			synctest.Wait()
			remaining -= perShard[i]
			assert.Equal(t, remaining, s.Len(), "after tick %d", i+1)
			mu.Lock()
			assert.Equal(t, perShard[i], seen[i], "shard %d swept at tick %d", i, i+1)
			mu.Unlock()
		}
		assert.Equal(t, 0, s.Len())

		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("SweepLoop did not return after cancel")
		}
	})
}

// TestSweepLoopStops runs SweepLoop on real time and checks that it returns
// on cancel; TestMain's leak check catches a goroutine left behind.
func TestSweepLoopStops(t *testing.T) {
	s, err := New(Config[*sess]{Shards: 2})
	require.NoError(t, err)
	id := newID(t)
	require.NoError(t, s.Create(id, &sess{}))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	removed := make(chan string, 1)
	go func() {
		defer close(done)
		s.SweepLoop(ctx, 20*time.Millisecond, func(string, *sess) bool { return true }, func(id string, _ *sess) { removed <- id })
	}()
	select {
	case got := <-removed:
		assert.Equal(t, id, got)
	case <-time.After(5 * time.Second):
		t.Fatal("entry not swept")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("SweepLoop did not return after cancel")
	}
}

// TestShardLoopQuiet checks with a fake clock that ShardLoop wakes once per
// every and visits all shards while quiet says so, spreads the shards over
// ticks otherwise, and visits every shard at least once per every plus a tick
// across the changes of mode.
func TestShardLoopQuiet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(Config[*sess]{Shards: 8})
		require.NoError(t, err)
		const every = 4 * time.Second
		tick, per := sweepSchedule(every, s.NumShards())
		require.Equal(t, 500*time.Millisecond, tick)
		require.Equal(t, 1, per)

		var quiet atomic.Bool
		type visit struct {
			at    time.Duration
			shard int
		}
		var (
			mu     sync.Mutex
			visits []visit
		)
		start := time.Now()
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ShardLoop(ctx, every, quiet.Load, func(i int) {
				mu.Lock()
				visits = append(visits, visit{time.Since(start), i})
				mu.Unlock()
			})
		}()
		wakeups := func(from, to time.Duration) (n int) {
			mu.Lock()
			defer mu.Unlock()
			last := time.Duration(-1)
			for _, v := range visits {
				if v.at >= from && v.at < to && v.at != last {
					n++
					last = v.at
				}
			}
			return n
		}

		time.Sleep(4200 * time.Millisecond) // spread: shards 0..7 at 0.5 s .. 4 s
		synctest.Wait()
		assert.Equal(t, 8, wakeups(0, 4200*time.Millisecond))
		quiet.Store(true)
		time.Sleep(9 * time.Second) // quiet from the wake-up at 4.5 s: 4.5, 8.5, 12.5
		synctest.Wait()
		assert.Equal(t, 3, wakeups(4200*time.Millisecond, 13200*time.Millisecond), "one wake-up per every while quiet")
		mu.Lock()
		assert.Len(t, visits, 8+3*8, "each quiet wake-up visits every shard")
		mu.Unlock()
		quiet.Store(false)
		time.Sleep(8 * time.Second) // 16.5 (ends the quiet period), then every 0.5 s
		synctest.Wait()
		assert.Equal(t, 1+9, wakeups(13200*time.Millisecond, 21200*time.Millisecond), "spread again")
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("ShardLoop did not return after cancel")
		}

		last := make([]time.Duration, s.NumShards())
		mu.Lock()
		defer mu.Unlock()
		for _, v := range visits {
			assert.LessOrEqual(t, v.at-last[v.shard], every+tick, "shard %d visited at %v, before at %v", v.shard, v.at, last[v.shard])
			last[v.shard] = v.at
		}
		for i, at := range last {
			assert.GreaterOrEqual(t, at, 21200*time.Millisecond-every-tick, "shard %d", i)
		}
	})
}
