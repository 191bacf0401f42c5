package gateway

import (
	"context"
	"time"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// upstreamEnd says how endSession ends a session's upstream side.
type upstreamEnd uint8

const (
	// upstreamGone: the upstream lost the session already; nothing to end.
	upstreamGone upstreamEnd = iota
	// upstreamNow: end it before endSession returns (a client's DELETE,
	// shutdown), bounded by the caller's context and upstreamCloseTimeout.
	upstreamNow
	// upstreamLater: hand it to the reaper (expiry): the caller, the
	// sweeper, never waits for upstream I/O.
	upstreamLater
	// upstreamOwn: upstreamLater on a cluster node that no longer owns the
	// session but holds an upstream session of its own for it (demote):
	// the owner does not use that one, so it ends whoever owns the session.
	upstreamOwn
)

// upstreamCloseTimeout bounds ending one upstream session.
const upstreamCloseTimeout = 5 * time.Second

// The reaper ends the upstream sessions of expired sessions: at most
// reapWorkers at a time, on Server-owned goroutines that exist only while
// there is work; at most reapQueue wait. Beyond that an upstream session
// that nothing else would end (a stdio process, a legacy HTTP+SSE stream:
// upstream.Aborter) is ended at once without waiting for its end, and one
// that expires upstream by itself (Streamable HTTP) is left to do so
// (counted, logged), so a mass expiry against a slow upstream never grows
// goroutines or memory without bound, nor leaks a process or a connection.
const (
	reapWorkers = 16
	reapQueue   = 4096
)

// endSession closes a session once: it leaves the store, its streams end
// (attached readers drain what is buffered, then see the end), pumps stop
// (a call in flight gets a -32603 error saying why), and its upstream side
// ends as how says.
func (s *Server) endSession(ctx context.Context, sess *session, reason CloseReason, how upstreamEnd) {
	sess.mu.Lock()
	if sess.closed {
		sess.mu.Unlock()
		return
	}
	sess.closed = true
	sess.closeReason = reason
	if sess.withStreams != nil && sess.nstreams.Load() > 0 {
		// The sweeper has nothing left to keep up. A session without
		// streams is not in the set (streamsChangedLocked, under mu): most
		// sessions end so, and a Delete of what is absent still locks and
		// searches a bucket of the shard's map.
		sess.withStreams.Delete(sess)
	}
	streams := sess.streams.snapshot()
	pumped := sess.pumpedLocked() // a legacy session's calls (calls.go)
	sess.mu.Unlock()

	if cur, ok := s.store.Get(sess.id); ok && cur == sess {
		s.store.Delete(sess.id)
	}
	if reason != CloseIdle && reason != CloseMaxAge {
		s.unwatched(sess) // expiry takes its sessions off the wheel itself
	}
	sess.cancel()
	for _, up := range pumped {
		_ = up.Close() // its pump ends, as an answer stream's does below
	}
	for _, st := range streams {
		st.closeUpstream()
		if st.id != 0 && st.finishedAt.Load() == 0 {
			// A call in flight: its pump answers it with an error (a
			// client still connected learns why) and finishes the stream.
			continue
		}
		s.finishStream(st)
	}
	if sess.cluster != nil {
		how = s.upstreamEndFor(sess, how)
		s.clusterEnded(sess, reason)
	}
	if sess.up != nil {
		switch how {
		case upstreamNow:
			s.closeUpstream(ctx, sess)
		case upstreamLater, upstreamOwn:
			s.reapLater(sess)
		}
	}
	s.metrics.sessionsClosed[reason].Add(1)
	s.cfg.Hooks.SessionClosed(sess.info(), reason)
}

// closeUpstream ends sess's upstream session, bounded by ctx and
// upstreamCloseTimeout.
func (s *Server) closeUpstream(ctx context.Context, sess *session) {
	var err error
	if c, ok := sess.up.(upstream.WithinCloser); ok {
		err = c.CloseWithin(ctx, upstreamCloseTimeout) // no context and timer per session end
	} else {
		dctx, cancel := context.WithTimeout(ctx, upstreamCloseTimeout)
		err = sess.up.Close(dctx)
		cancel()
	}
	if err != nil {
		s.log.Debug("upstream session close failed", "session", shortID(sess.id), "err", err)
	}
}

// reapLogEvery is how often at most the upstream closes past the reaper's
// queue are logged (a mass expiry must not flood the log).
const reapLogEvery = 10 * time.Second

// reapLater queues sess's upstream side for the reaper and makes sure a
// reaper runs. It never blocks: with the queue full, it starts ending an
// upstream side that would not end by itself (abortUpstream, no waiting,
// no blocking I/O: its callers may hold evict.mu) and leaves the others to
// expire upstream.
func (s *Server) reapLater(sess *session) {
	select {
	case s.reapq <- sess:
	default:
		now := s.clock.Now()
		if abortUpstream(sess.up) {
			if n, ok := s.reapAborted.event(now); ok {
				s.log.Warn("too many upstream sessions waiting to be ended: ended without waiting for their end",
					"session", shortID(sess.id), "since_last_line", n)
			}
			return
		}
		s.metrics.upstreamSkipped.Add(1)
		if n, ok := s.reapSkipped.event(now); ok {
			s.log.Warn("too many upstream sessions waiting to be ended: left to expire upstream",
				"session", shortID(sess.id), "since_last_line", n)
		}
		return
	}
	for {
		n := s.reapers.Load()
		if n >= reapWorkers {
			return
		}
		if s.reapers.CompareAndSwap(n, n+1) {
			if !s.goOwned(s.reapLoop) {
				s.reapers.Add(-1) // shutting down: Shutdown drains the queue
			}
			return
		}
	}
}

// abortUpstream starts ending up, without waiting, if nothing else would
// end it (upstream.Aborter, through the gateway's wrappers), and reports
// whether up is taken care of: false means it was left as it is, to expire
// upstream by itself (Streamable HTTP), or to its owner node.
func abortUpstream(up upstream.Session) bool {
	switch u := up.(type) {
	case *lazyUpstream:
		return u.abort()
	case *reinitSession:
		return u.abort()
	case *forwardSession:
		if l := u.local.Load(); l != nil {
			return l.abort()
		}
		return false // the owner's: ending it is a request to the owner
	case upstream.Aborter:
		u.Abort()
		return true
	}
	return false
}

// reapLoop ends queued upstream sessions until the queue is empty.
func (s *Server) reapLoop(context.Context) {
	for {
		select {
		case sess := <-s.reapq:
			// Not the Server's context: shutdown lets started closes finish.
			s.closeUpstream(context.Background(), sess)
			continue
		default:
		}
		s.reapers.Add(-1)
		// A session queued between the empty check and the decrement may
		// have found every reaper busy: look again before leaving.
		if len(s.reapq) == 0 {
			return
		}
		for {
			n := s.reapers.Load()
			if n >= reapWorkers {
				return
			}
			if s.reapers.CompareAndSwap(n, n+1) {
				break
			}
		}
	}
}

// drainReaps ends the queued upstream sessions on the caller's goroutine
// (shutdown), until the queue is empty or ctx ends.
func (s *Server) drainReaps(ctx context.Context) {
	for ctx.Err() == nil {
		select {
		case sess := <-s.reapq:
			s.closeUpstream(ctx, sess)
		default:
			return
		}
	}
}
