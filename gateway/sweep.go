package gateway

import (
	"context"
)

// sweepLoop visits one shard per tick so every shard is swept once per
// Config.SweepInterval: idle and over-age sessions are removed, heartbeats
// are kicked on quiet streams, and finished streams past their retention are
// dropped. No timer or goroutine exists per session or stream.
func (s *Server) sweepLoop(ctx context.Context) {
	every := s.cfg.SweepInterval
	if hb := s.cfg.Heartbeat; hb > 0 && hb/4 < every {
		every = hb / 4 // heartbeats land within a quarter interval
	}
	s.store.ShardLoop(ctx, every, s.sweepShard)
}

func (s *Server) sweepShard(i int) {
	now := s.clock.Now()
	// One pass: stream upkeep for every session, then its expiry.
	s.store.VisitSweepShard(i, func(_ string, sess *session) {
		s.maintainStreams(sess, now)
	}, func(_ string, sess *session) bool {
		return s.expiredReason(sess, now) >= 0
	}, func(_ string, sess *session) {
		reason := CloseIdle
		if r := s.expiredReason(sess, now); r >= 0 {
			reason = CloseReason(r)
		}
		// Ending the upstream session is I/O: never in the sweeper.
		if !s.goOwned(func(ctx context.Context) { s.endSession(ctx, sess, reason, false) }) {
			s.endSession(context.Background(), sess, reason, false)
		}
	})
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

// maintainStreams kicks heartbeats, cuts stalled writes and drops finished
// streams whose retention has passed. Kicks and cuts happen after
// session.mu is released: they may start a writer or close a connection.
func (s *Server) maintainStreams(sess *session, now int64) {
	if sess.nstreams.Load() == 0 {
		return // most idle sessions: no lock, no map walk (a stream added meanwhile waits for the next sweep)
	}
	retention := int64(s.cfg.StreamRetention)
	var wakeBuf, cutBuf [4]*stream
	wake, cut := wakeBuf[:0], cutBuf[:0]
	sess.mu.Lock()
	for id, st := range sess.streams {
		if st.attached.Load() {
			if ws := st.writeSince.Load(); ws != 0 && now-ws >= int64(s.cfg.WriteStallTimeout) {
				cut = append(cut, st)
				continue
			}
			if d := st.connDeadline.Load(); s.quietFor(st, now) || (d != 0 && now >= d) {
				wake = append(wake, st)
			}
			continue
		}
		if f := st.finishedAt.Load(); f != 0 && now-f >= retention && id != 0 {
			sess.deleteStreamLocked(id)
			sess.finished--
		}
	}
	sess.mu.Unlock()
	for _, st := range cut {
		s.log.Info("write stalled: cutting the connection", "session", sess.id, "stream", st.id)
		st.stalled.Store(true)
		st.disconnect()
	}
	for _, st := range wake {
		st.wake()
	}
}
