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
// standalone and resumed stream, and POST answers of 2025-11-25 sessions.
func (s *Server) drainableConns() []*clientConn {
	var conns []*clientConn
	s.store.Range(func(_ string, sess *session) bool {
		sess.mu.Lock()
		for _, st := range sess.streams.all() {
			c := st.conn.Load()
			if c == nil {
				continue
			}
			if _, answer := c.w.(*bodyWriter); answer && !versionAtLeast(sess.version, "2025-11-25") {
				continue
			}
			conns = append(conns, c)
		}
		sess.mu.Unlock()
		return true
	})
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

// drainNow ends c with a retry hint, for reason r.
func (c *clientConn) drainNow(r CloseReason) {
	c.drain.CompareAndSwap(0, uint32(r)+1)
	c.w.kick()
}
