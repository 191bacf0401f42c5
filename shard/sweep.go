package shard

import (
	"context"
	"time"
)

// DefaultSweepInterval is the period SweepLoop uses when every is not positive.
const DefaultSweepInterval = time.Second

// minSweepTick bounds how often SweepLoop wakes up: it sweeps several shards
// per tick rather than tick faster. A wake-up of an otherwise idle process
// costs the Go runtime ~150 µs of CPU here (scheduler, netpoller, futex): one
// per shard, 64 a second by default, held an idle gateway at ~1.3 % of a
// core; ten a second cost a sixth of that.
const minSweepTick = 100 * time.Millisecond

// SweepShard removes every entry of shard i for which expired returns true and
// calls onRemoved (if not nil) for each removed entry after it left the map,
// outside any map lock, and after its counts were released. An entry deleted
// concurrently by Delete is reported by exactly one of them. It returns the
// number of entries removed. It panics if i is not in [0, NumShards()).
//
// expired is called once for every entry seen and, for those it reports, once
// more under the entry's bucket lock just before removal, so an entry that
// stopped being expired in between, or was replaced under the same ID, stays.
// expired must therefore be cheap (an atomic load and a compare) and must not
// modify the store. onRemoved may call any Store method.
//
// Like RangeShard, a sweep is not a snapshot: entries created during it may or
// may not be examined.
func (s *Store[V]) SweepShard(i int, expired func(id string, v V) bool, onRemoved func(id string, v V)) int {
	return s.VisitSweepShard(i, nil, expired, onRemoved)
}

// VisitSweepShard is SweepShard that also calls visit (if not nil) for every
// entry it sees, just before expired is first asked about that entry, outside
// every lock, so one pass over the shard can do per-entry upkeep and expiry.
// visit may call any Store method.
func (s *Store[V]) VisitSweepShard(i int, visit func(id string, v V), expired func(id string, v V) bool, onRemoved func(id string, v V)) int {
	m := s.shards[i]
	removed := 0
	m.Range(func(k key, e entry[V]) bool {
		id := e.id
		if visit != nil {
			visit(id, e.v)
		}
		if !expired(id, e.v) {
			return true
		}
		var (
			gone V
			ok   bool
		)
		m.Compute(k, func(old entry[V], loaded bool) (entry[V], bool) {
			if !loaded {
				return old, true // absent: nothing to delete
			}
			if !expired(id, old.v) {
				return old, false // keep (stores the same value again)
			}
			gone, ok = old.v, true
			return old, true
		})
		if !ok {
			return true
		}
		removed++
		s.release(gone)
		if onRemoved != nil {
			onRemoved(id, gone)
		}
		return true
	})
	return removed
}

// SweepLoop sweeps the shards in order, one per tick, so that every shard is
// visited once per every (DefaultSweepInterval when every <= 0); when that
// would tick more often than once per minSweepTick, it sweeps several shards
// per tick instead. The first shard is swept one tick after the start. It returns
// when ctx is done; the caller owns the goroutine that runs it. expired and
// onRemoved follow the rules of SweepShard.
func (s *Store[V]) SweepLoop(ctx context.Context, every time.Duration, expired func(id string, v V) bool, onRemoved func(id string, v V)) {
	s.ShardLoop(ctx, every, nil, func(i int) { s.SweepShard(i, expired, onRemoved) })
}

// ShardLoop calls visit for each shard in order on SweepLoop's schedule:
// every shard once per every (DefaultSweepInterval when every <= 0), one
// shard per tick, or several per tick when ticks would be shorter than
// minSweepTick. Callers use it for per-shard work beyond expiry (heartbeats,
// retention). It returns when ctx is done; the caller owns the goroutine.
//
// quiet (if not nil) is asked at every wake-up whether the visits need no
// spreading over time now (a gateway with no streams has nothing to smooth
// out); while it says so, the loop wakes once per every and visits all
// shards then, so an idle process wakes once per every instead of every
// minSweepTick. The wake-up that finds quiet true visits every shard, so a
// shard is visited at least once per every plus one tick in either mode and
// across a change of modes; the first wake-up after quiet turns false returns
// to the spread schedule.
func (s *Store[V]) ShardLoop(ctx context.Context, every time.Duration, quiet func() bool, visit func(shard int)) {
	if every <= 0 {
		every = DefaultSweepInterval
	}
	n := len(s.shards)
	tick, per := sweepSchedule(every, n)
	t := time.NewTicker(tick)
	defer t.Stop()
	next, calm := 0, false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A wake-up after a quiet period (a whole every) visits every shard;
		// so does one that starts a quiet period, the next visit being a
		// whole every away.
		c := quiet != nil && quiet()
		count := per
		if calm || c {
			count = n
		}
		if c != calm {
			calm = c
			if calm {
				t.Reset(every)
			} else {
				t.Reset(tick)
			}
		}
		for k := 0; k < count; k++ {
			if ctx.Err() != nil {
				return
			}
			visit(next)
			next = (next + 1) & (n - 1)
		}
	}
}

// sweepSchedule returns the tick period and the shards swept per tick so that
// n shards are visited at least once per every, with ticks no shorter than
// minSweepTick (unless every itself is shorter). A round of n shards takes
// exactly every; when per does not divide n, the last tick of a round starts
// the next round early.
func sweepSchedule(every time.Duration, n int) (tick time.Duration, per int) {
	rounds := max(1, int(every/minSweepTick)) // ticks per every at the most
	if rounds >= n {
		return max(every/time.Duration(n), 1), 1
	}
	per = (n + rounds - 1) / rounds
	rounds = (n + per - 1) / per
	return max(every/time.Duration(rounds), 1), per
}
