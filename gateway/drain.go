package gateway

import (
	"context"
	"math/rand/v2"
	"time"
)

// A shutdown drains before it stops: the gateway turns not-ready, refuses
// new sessions and new stream connections (503 with Retry-After), and ends
// the attached stream connections with a retry hint one at a time, spread
// over Config.DrainWindow with jitter, so that clients do not all reconnect
// in the same instant (to another node, or to this one after a restart with
// its state). Requests on existing sessions are still served meanwhile.
// A stateless subscriptions/listen ends instead with its graceful end, the
// listen's complete response (endListen); a new one is refused.
// POST answers of sessions older than 2025-11-25 are not cut (those clients
// cannot resume an answer before its response); they finish, or end when
// the shutdown does.

// With Config.StateFile the drain is the first half of a restart: the
// clients will come back to this address, to the next process. Each
// connection the drain ends gets a retry hint of the whole drain window
// plus Config.RetryHint (the time a restart is allowed), the same for all,
// so the moments the clients reconnect keep the drain's spread, shifted
// past the restart: connection i, ended at t_i in [0, window], comes back
// at t_i + window + RetryHint. A client that comes back early finds no
// listener and retries with its own backoff. Stream requests during such a
// drain are served (a session outlives the restart, and the Go SDK gives a
// session up when its stream reconnect gets an error status).

// Draining reports whether a shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// CutDrain ends the paced drain of a running Shutdown: every stream
// connection still attached is ended at once (a second SIGTERM or SIGINT).
// Safe to call at any time and more than once.
func (s *Server) CutDrain() {
	s.cutOnce.Do(func() { close(s.cutDrain) })
}

// drainStreams ends the drainable stream connections spread over the drain
// window (at most two thirds of the time ctx leaves). It returns when all are ended, or early when ctx ends or CutDrain
// is called; the caller then ends the rest at once.
func (s *Server) drainStreams(ctx context.Context) {
	window := s.cfg.DrainWindow
	if dl, ok := ctx.Deadline(); ok {
		// Leave a third of the shutdown's time for what follows the drain.
		window = min(window, time.Until(dl)*2/3)
	}
	if s.cfg.StateFile != "" {
		s.restartHint.Store(max(window, 0).Milliseconds() + s.cfg.RetryHint.Milliseconds())
	}
	if window <= 0 {
		return
	}
	conns := s.drainableConns()
	if len(conns) == 0 {
		return
	}
	rand.Shuffle(len(conns), func(i, j int) { conns[i], conns[j] = conns[j], conns[i] })
	slot := window / time.Duration(len(conns))
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for i, c := range conns {
		// Each connection ends at a random moment of its own slot.
		at := start.Add(time.Duration(i)*slot + rand.N(slot+1))
		if d := time.Until(at); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			case <-s.cutDrain:
				return
			}
		}
		c.drainNow(CloseShutdown)
	}
}

// drainableConns lists the attached connections a drain may end: every
// standalone and resumed stream, POST answers of 2025-11-25 sessions, and
// stateless subscriptions/listen streams.
func (s *Server) drainableConns() []*clientConn {
	var conns []*clientConn
	s.ephemeral.Range(func(sess *session, _ struct{}) bool {
		if sess.listen { // a stateless request in flight finishes
			conns = sess.appendConns(conns, nil)
		}
		return true
	})
	s.store.Range(func(_ string, sess *session) bool {
		conns = sess.appendConns(conns, func(c *clientConn) bool {
			_, answer := c.w.(*bodyWriter)
			return !answer || versionAtLeast(sess.version, "2025-11-25")
		})
		return true
	})
	return conns
}

// appendConns appends to conns the connections attached to sess's streams
// that keep accepts (nil: all).
func (sess *session) appendConns(conns []*clientConn, keep func(*clientConn) bool) []*clientConn {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	for _, st := range sess.streams.all() {
		if c := st.conn.Load(); c != nil && (keep == nil || keep(c)) {
			conns = append(conns, c)
		}
	}
	return conns
}

// retryHintMs is the SSE retry hint that ends a connection for reason r:
// during a restart's shutdown, the restart hint (see above).
func (s *Server) retryHintMs(r CloseReason) int64 {
	if h := s.restartHint.Load(); h > 0 && r == CloseShutdown {
		return h
	}
	return s.cfg.RetryHint.Milliseconds()
}

// drainNow ends c with a retry hint, for reason r; a stateless listen's
// connection with the listen's complete response instead (endListen).
func (c *clientConn) drainNow(r CloseReason) {
	if c.st.sess.listen {
		c.srv.endListen(c.st.sess)
		return
	}
	c.drain.CompareAndSwap(0, uint32(r)+1)
	c.w.kick()
}

// endListen ends a stateless subscriptions/listen gracefully (PROTOCOL.md
// section 2, rule 45): its upstream stream is closed, and its pump answers
// the listen with resultType "complete" (answerOwed) and finishes the
// stream, which its connection sends before it ends. The stateless
// revision has no retry hint and no resumption: the client listens again,
// on another node or after the restart. Idempotent.
func (s *Server) endListen(sess *session) {
	if !sess.listenEnded.CompareAndSwap(false, true) {
		return
	}
	sess.mu.Lock()
	streams := sess.streams.snapshot()
	sess.mu.Unlock()
	for _, st := range streams {
		// A stream whose upstream is not set yet closes it itself
		// (relayedBy sees listenEnded).
		st.closeUpstream()
	}
}

// endListens ends every stateless listen still open (endListen): the
// drain's end, before the remaining connections are cut.
func (s *Server) endListens() {
	s.ephemeral.Range(func(sess *session, _ struct{}) bool {
		if sess.listen {
			s.endListen(sess)
		}
		return true
	})
}
