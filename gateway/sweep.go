package gateway

import (
	"context"
	"time"
)

// sweepLoop visits one shard per tick so every shard is swept once per
// Config.SweepInterval (or a quarter heartbeat): heartbeats are kicked on
// quiet streams, stalled writes cut and finished streams past their
// retention dropped, for the sessions that have streams; on every
// fullSweepEvery-th sweep of a shard, the sessions due on the shard's
// expiry wheel (expiry.go) are checked, and idle and over-age ones end.
// No timer or goroutine exists per session or stream.
func (s *Server) sweepLoop(ctx context.Context) {
	every := s.cfg.SweepInterval
	if hb := s.cfg.Heartbeat; hb > 0 && hb/4 < every {
		every = hb / 4 // heartbeats land within a quarter interval
	}
	s.fullEvery = fullSweepEvery(every, s.cfg.SessionIdleTimeout, s.cfg.SessionMaxAge)
	s.store.ShardLoop(ctx, every, s.sweepQuiet, s.sweepShard)
}

// sweepQuiet reports whether no session has a stream: then the sweeper has
// only expiry checks to do, and wakes once per sweep interval instead of
// spreading the shards over ticks (shard.ShardLoop). A stream opened while
// it sleeps is kept up at its shard's next visit, as on the spread schedule:
// each shard is still visited once per interval.
func (s *Server) sweepQuiet() bool {
	if s.ephemeral.Size() > 0 {
		return false
	}
	for _, m := range s.withStreams {
		if m.Size() > 0 {
			return false
		}
	}
	return true
}

// maxExpiryCheck bounds how long a session may stay past its idle timeout
// or maximum age before a sweep ends it.
const maxExpiryCheck = 30 * time.Second

// fullSweepEvery returns how many sweeper passes over a shard make one that
// also checks every session's expiry: about 32 per idle timeout (or maximum
// age, if shorter), at least one per maxExpiryCheck. The passes between
// visit only sessions with streams, so idle sessions without any cost
// nothing most of the time.
func fullSweepEvery(every, idle, maxAge time.Duration) uint32 {
	check := expiryCheckPeriod(idle, maxAge)
	if every <= 0 || check <= every {
		return 1
	}
	return uint32(check / every)
}

// expiryCheckPeriod is how often expiry is checked: 32 times per idle
// timeout (or maximum age, if shorter), at least every maxExpiryCheck.
func expiryCheckPeriod(idle, maxAge time.Duration) time.Duration {
	limit := idle
	if maxAge > 0 && maxAge < limit {
		limit = maxAge
	}
	return max(min(limit/32, maxExpiryCheck), time.Millisecond)
}

func (s *Server) sweepShard(i int) {
	now := s.clock.Now()
	if i == 0 {
		// The streams of stateless requests belong to no shard: they are
		// kept up once per sweep of all shards.
		s.ephemeral.Range(func(sess *session, _ struct{}) bool {
			s.maintainStreams(sess, now)
			return true
		})
	}
	s.sweepPass[i]++
	if s.sweepPass[i]%s.fullEvery != 0 {
		// Stream upkeep only: sessions without streams need nothing now.
		s.withStreams[i].Range(func(sess *session, _ struct{}) bool {
			s.maintainStreams(sess, now)
			return true
		})
		if s.wheels[i].compactable() {
			s.expireDue(i, now) // ended sessions leave the wheel (expiry.go)
		}
		return
	}
	// An expiry check: stream upkeep, then the sessions due on the wheel.
	s.withStreams[i].Range(func(sess *session, _ struct{}) bool {
		s.maintainStreams(sess, now)
		return true
	})
	s.expireDue(i, now)
}

// expiredReason returns the CloseReason for an expired session, or -1.
// Sessions with calls in flight or a connected stream are never idle.
func (s *Server) expiredReason(sess *session, now int64) int {
	if s.cfg.SessionMaxAge > 0 && now-sess.created >= int64(s.cfg.SessionMaxAge) {
		return int(CloseMaxAge)
	}
	if sess.busy.Load() == 0 && now-sess.lastActive.Load() >= int64(s.cfg.SessionIdleTimeout) {
		return int(CloseIdle)
	}
	return -1
}

// maintainStreams kicks heartbeats, cuts stalled writes, ends a legacy
// stream whose client closed it (legacyClientLeft) and drops finished
// streams whose retention has passed. Kicks, cuts and the look at a legacy
// client's socket happen after session.mu is released: they may start a
// writer or close a connection.
func (s *Server) maintainStreams(sess *session, now int64) {
	if sess.nstreams.Load() == 0 {
		return // most idle sessions: no lock, no map walk (a stream added meanwhile waits for the next sweep)
	}
	retention := int64(s.cfg.StreamRetention)
	var wakeBuf, cutBuf [4]*clientConn
	wake, cut := wakeBuf[:0], cutBuf[:0]
	var legacy *clientConn
	sess.mu.Lock()
	for id, st := range sess.streams.all() {
		if c := st.conn.Load(); c != nil {
			if ws := c.writeSince.Load(); ws != 0 && now-ws >= int64(s.cfg.WriteStallTimeout) {
				cut = append(cut, c)
				continue
			}
			if sess.legacy != nil {
				legacy = c
			}
			if d := c.deadline.Load(); s.quietFor(c, now) || (d != 0 && now >= d) {
				wake = append(wake, c)
			}
			continue
		}
		if f := st.finishedAt.Load(); f != 0 && now-f >= retention && id != 0 {
			sess.deleteStreamLocked(id)
			sess.dropFinishedLocked(id)
		}
	}
	sess.mu.Unlock()
	for _, c := range cut {
		s.log.Info("write stalled: cutting the connection", "session", shortID(sess.id), "stream", c.st.id)
		c.end(CloseWriteStall)
	}
	if legacy != nil && legacyClientLeft(legacy.nc) {
		legacy.end(CloseClientGone) // the session ends with it (legacyStreamClosed)
	}
	for _, c := range wake {
		c.w.kick()
	}
}
