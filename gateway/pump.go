package gateway

import (
	"context"
	"errors"
	"hash/maphash"
	"time"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
)

// pumpAnswer copies one upstream POST answer stream into st's ring until
// every request of the POST was answered, then finishes the stream. A
// client that dropped its connection does not stop it (a disconnect is not
// a cancellation before 2026-07-28): the answer stays resumable.
func (s *Server) pumpAnswer(sess *session, st *stream, up upstream.Stream, ids [][]byte) {
	defer func() {
		sess.busy.Add(-1)
		sess.touch(s.clock.Now())
	}()
	defer sess.removeInflight(ids)
	defer s.finishStream(st)
	defer up.Close()
	var p jsonrpc.Parser
	pending := make(map[string]bool, len(ids))
	for _, id := range ids {
		pending[string(id)] = true
	}
	for len(pending) > 0 {
		msg, err := up.Next()
		if err != nil {
			if sess.ctx.Err() == nil {
				s.metrics.upstreamErrors.Add(1)
				s.log.Warn("upstream answer stream ended early", "session", sess.id, "stream", st.id, "err", err)
				// Never leave a call hanging: answer what is still owed.
				for id := range pending {
					e := jsonrpc.AppendError(nil, []byte(id), jsonrpc.CodeInternalError, "upstream stream ended before the response", nil)
					s.push(st, ringbuf.MustDeliver, 0, e)
				}
			}
			return
		}
		class, key, respID := classify(&p, msg)
		if respID != nil && pending[string(respID)] {
			delete(pending, string(respID))
		}
		s.push(st, class, key, msg)
	}
	upstream.Drain(up)
}

// ensureStandalonePump starts the pump of the standalone stream once.
func (s *Server) ensureStandalonePump(sess *session, st *stream) {
	if st.pumping.CompareAndSwap(false, true) {
		if !s.goOwned(func(ctx context.Context) { s.connectStandalone(ctx, sess, st, minBackoff) }) {
			st.pumping.Store(false)
		}
	}
}

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
)

// connectStandalone opens the upstream's standalone stream for stream 0,
// retrying with backoff, and hands it to readStandalone on a fresh
// goroutine: the connect path's deep stack stays behind, so each idle
// stream's reader keeps a small one. Together they feed stream 0 for the
// life of the session.
func (s *Server) connectStandalone(ctx context.Context, sess *session, st *stream, backoff time.Duration) {
	for {
		if sess.ctx.Err() != nil || ctx.Err() != nil {
			return
		}
		up, err := sess.up.Listen(sess.ctx)
		switch {
		case errors.Is(err, upstream.ErrNotSupported):
			return // the stream stays open for heartbeats; nothing feeds it
		case errors.Is(err, upstream.ErrSessionGone):
			s.endSession(context.Background(), sess, CloseUpstreamGone, false)
			return
		case err != nil:
			s.log.Debug("upstream standalone stream failed", "session", sess.id, "err", err)
			if !sleepCtx(sess.ctx, backoff) {
				return
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		st.setUpstream(up)
		if sess.ctx.Err() != nil { // closed while connecting
			_ = up.Close()
			return
		}
		if !s.addOwned() {
			_ = up.Close()
			return
		}
		// A plain go statement: no closure frames above the reader, which
		// parks for most of its life (see pumpStandalone).
		go s.readStandalone(sess, st, up, backoff)
		return
	}
}

// readStandalone copies the upstream's standalone stream into stream 0
// until it ends, then reconnects after a backoff. It runs on an owned
// goroutine counted by addOwned.
func (s *Server) readStandalone(sess *session, st *stream, up upstream.Stream, backoff time.Duration) {
	defer s.wg.Done()
	got := s.pumpStandalone(st, up)
	_ = up.Close()
	if got {
		backoff = minBackoff
	}
	if !sleepCtx(sess.ctx, backoff) || s.ctx.Err() != nil {
		return
	}
	next := min(backoff*2, maxBackoff)
	s.goOwned(func(ctx context.Context) { s.connectStandalone(ctx, sess, st, next) })
}

// pumpStandalone pushes the stream's messages into st until it ends and
// reports whether any arrived. An idle standalone stream's goroutine parks
// below this frame; keeping the frames above the park small (a pooled
// parser, no closures) lets the runtime shrink its stack to the minimum.
func (s *Server) pumpStandalone(st *stream, up upstream.Stream) bool {
	got := false
	for {
		msg, err := up.Next()
		if err != nil {
			return got
		}
		got = true
		p := s.parsers.Get().(*jsonrpc.Parser)
		class, key, _ := classify(p, msg)
		s.parsers.Put(p)
		s.push(st, class, key, msg)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// push stores one upstream message in st's ring and applies the outcome.
func (s *Server) push(st *stream, class ringbuf.Class, key uint64, msg []byte) {
	_, out, err := st.ring.Push(class, key, msg)
	if err != nil {
		if errors.Is(err, ringbuf.ErrOverflow) {
			// A must-deliver message cannot be queued: cut the reader and
			// fail visibly rather than lose it silently.
			s.metrics.overflows.Add(1)
			s.log.Error("stream overflow: must-deliver message lost", "session", st.sess.id, "stream", st.id)
			st.disconnect()
		}
		return
	}
	st.notify()
	s.metrics.eventsPushed.Add(1)
	switch out {
	case ringbuf.Coalesced:
		s.metrics.eventsCoalesced.Add(1)
	case ringbuf.DroppedOldest:
		// One push may drop several events: take the ring's own count.
		// Each stream has one producer, so the delta is exact.
		total := st.ring.Stats().DroppedOldest
		s.metrics.droppedOldest.Add(total - st.droppedOldestSeen.Swap(total))
	case ringbuf.DroppedNewest:
		s.metrics.droppedNewest.Add(1)
	case ringbuf.MustDisconnect:
		if class == ringbuf.Droppable {
			s.metrics.droppedCut.Add(1)
		}
		if st.attached.Load() {
			s.metrics.slowDisconnects.Add(1)
			st.disconnect()
		}
	}
}

// finishStream closes a POST answer stream's ring and starts its retention.
func (s *Server) finishStream(st *stream) {
	st.ring.Close()
	st.notify()
	if !st.finishedAt.CompareAndSwap(0, s.clock.Now()) || st.id == 0 {
		return
	}
	st.sess.livePost.Add(-1)
	st.sess.mu.Lock()
	if st.sess.streams[st.id] == st {
		st.sess.finished++
		st.sess.pruneFinishedLocked()
	}
	st.sess.mu.Unlock()
}

var coalesceSeed = maphash.MakeSeed()

// classify decides a message's ring class and coalescing key, and returns
// the id of a response (nil otherwise). Responses, server-to-client
// requests and cancellations must be delivered; other notifications may be
// dropped; progress coalesces per token, list_changed per kind.
func classify(p *jsonrpc.Parser, msg []byte) (ringbuf.Class, uint64, []byte) {
	msgs, batch, perr := p.Parse(msg)
	if perr != nil || batch || len(msgs) != 1 {
		return ringbuf.MustDeliver, 0, nil // unknown shape: never drop it
	}
	m := &msgs[0]
	switch m.Kind {
	case jsonrpc.KindResponse, jsonrpc.KindError:
		return ringbuf.MustDeliver, 0, m.ID
	case jsonrpc.KindRequest:
		return ringbuf.MustDeliver, 0, nil
	}
	method := string(m.Method)
	switch {
	case method == "notifications/progress" && m.ProgressToken != nil:
		return ringbuf.Droppable, coalesceKey('p', m.ProgressToken), nil
	case method == "notifications/cancelled":
		return ringbuf.MustDeliver, 0, nil
	case len(method) > len("/list_changed") && method[len(method)-len("/list_changed"):] == "/list_changed":
		return ringbuf.Droppable, coalesceKey('l', m.Method), nil
	case method == "notifications/resources/updated":
		if uri, ok := jsonrpc.Lookup(m.Raw, "params", "uri"); ok {
			return ringbuf.Droppable, coalesceKey('u', uri), nil
		}
	}
	return ringbuf.Droppable, 0, nil
}

func coalesceKey(kind byte, b []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(coalesceSeed)
	_ = h.WriteByte(kind)
	_, _ = h.Write(b)
	k := h.Sum64()
	if k == 0 {
		k = 1
	}
	return k
}

// endSession closes a session once: it leaves the store, its streams end
// (attached readers drain what is buffered, then see the end), pumps stop,
// and unless the upstream already lost it, the upstream session is ended.
func (s *Server) endSession(ctx context.Context, sess *session, reason CloseReason, deleteUpstream bool) {
	sess.mu.Lock()
	if sess.closed {
		sess.mu.Unlock()
		return
	}
	sess.closed = true
	if sess.withStreams != nil {
		sess.withStreams.Delete(sess) // the sweeper has nothing left to keep up
	}
	streams := make([]*stream, 0, len(sess.streams))
	for _, st := range sess.streams {
		streams = append(streams, st)
	}
	sess.mu.Unlock()

	if cur, ok := s.store.Get(sess.id); ok && cur == sess {
		s.store.Delete(sess.id)
	}
	sess.cancel()
	for _, st := range streams {
		st.closeUpstream()
		s.finishStream(st)
	}
	if reason != CloseUpstreamGone && sess.up != nil {
		if deleteUpstream || reason == CloseIdle || reason == CloseMaxAge {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := sess.up.Close(dctx); err != nil {
				s.log.Debug("upstream session close failed", "session", sess.id, "err", err)
			}
			cancel()
		}
	}
	s.metrics.sessionsClosed[reason].Add(1)
	s.cfg.Hooks.SessionClosed(sess.info(), reason)
}
