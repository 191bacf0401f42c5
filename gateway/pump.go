package gateway

import (
	"context"
	"errors"
	"hash/maphash"
	"iter"
	"strconv"
	"time"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
)

// pumpAnswer copies one upstream POST answer stream into st's ring until
// every call of the POST was answered, then finishes the stream. A client
// that dropped its connection does not stop it (a disconnect is not a
// cancellation before 2026-07-28): the answer stays resumable. Answers get
// the client's ids back; must-deliver messages wait for room in the ring
// (backpressure) rather than being lost. pending holds the calls still owed
// an answer when relayBuffered answered some; not started: all of them.
func (s *Server) pumpAnswer(sess *session, st *stream, up upstream.Stream, calls []*call, pending pendingCalls) {
	defer s.endAnswer(sess, st, calls)
	defer up.Close()
	if !pending.started() {
		pending = newPendingCalls(calls)
	}
	if s.relayAnswers(sess, st, up, &pending, nil) != relayAnswered {
		return
	}
	// Every call is answered: the client's stream ends now, whatever the
	// upstream still sends (late messages are read and dropped so its
	// connection can be pooled).
	s.finishStream(st)
	upstream.Drain(up)
}

// endAnswer is the end of an answer stream's relaying, by a pump or by the
// request's goroutine: no call of the POST is owed any more, the ring is
// closed, and the session's idle clock runs again.
func (s *Server) endAnswer(sess *session, st *stream, calls []*call) {
	s.finishStream(st)
	sess.endCalls(calls)
	sess.busy.Add(-1)
	sess.touch(s.clock.Now())
}

// pendingCalls are the calls of a POST not answered yet, found by their
// upstream ids. Nearly every POST carries one call: up to pendingInline
// calls are looked up in the POST's own slice, the answered ones marked in
// a bit set, which allocates nothing; a larger batch gets a map. The zero
// value has not started (started): it stands for all of a POST's calls.
type pendingCalls struct {
	calls    []*call // up to pendingInline calls
	answered uint64  // bit i: calls[i] was answered
	left     int
	m        map[uint64]*call // more than pendingInline calls
}

const pendingInline = 64 // bits in pendingCalls.answered

func newPendingCalls(calls []*call) pendingCalls {
	p := pendingCalls{left: len(calls)}
	if len(calls) <= pendingInline {
		p.calls = calls
		if p.calls == nil {
			p.calls = []*call{} // started, with nothing owed
		}
		return p
	}
	p.m = make(map[uint64]*call, len(calls))
	for _, c := range calls {
		p.m[c.upID] = c
	}
	return p
}

func (p *pendingCalls) started() bool { return p.calls != nil || p.m != nil }

// take returns the pending call with upstream id up and marks it answered;
// nil when no call of the POST waits for that id.
func (p *pendingCalls) take(up uint64) *call {
	if p.m != nil {
		c := p.m[up]
		if c != nil {
			delete(p.m, up)
			p.left--
		}
		return c
	}
	if i := callIndex(p.calls, up); i >= 0 && p.answered&(1<<i) == 0 {
		p.answered |= 1 << i
		p.left--
		return p.calls[i]
	}
	return nil
}

// lateProgress reports whether the progress token tok (byte for byte) is
// that of a call of the POST answered already and of none still pending
// (a batch of more than pendingInline calls is not looked at).
func (p *pendingCalls) lateProgress(tok []byte) bool {
	if p.answered == 0 {
		return false
	}
	late := false
	for i, c := range p.calls {
		if c.sentToken(tok) {
			if p.answered&(1<<i) == 0 {
				return false
			}
			late = true
		}
	}
	return late
}

// all yields the calls not answered yet.
func (p *pendingCalls) all() iter.Seq[*call] {
	return func(yield func(*call) bool) {
		if p.m != nil {
			for _, c := range p.m {
				if !yield(c) {
					return
				}
			}
			return
		}
		for i, c := range p.calls {
			if p.answered&(1<<i) == 0 && !yield(c) {
				return
			}
		}
	}
}

// relayBuffered relays what of an answer stream arrived with its response
// headers, in the request's own goroutine (upstream/inhand.go): most SSE
// answers come whole with them, and relaying them here spares the pump
// goroutine, its start and two wake-ups. It reports whether it finished
// the answer (every call answered, or the stream ended and the calls left
// got errors); if not, a pump goes on from where it stopped, owing the calls
// in pending (not started: all of them). It does not start when the input could fill
// the ring up to its hard limits (a must-deliver push would then wait for
// a reader that this goroutine is), or for a stream other nodes follow.
//
// Input that has not arrived yet is waited for here, up to the
// whole-answer window, when the transport can tell what arrives without
// reading it (upstream.Buffered.AwaitBuffered): the headers alone (servers
// that send them before they work on the answer), or a priming event or a
// notification before the response. waited is how long, which the
// whole-answer wait then does not wait again; an answer that takes longer
// goes to the pump, no later than it would have streamed.
func (s *Server) relayBuffered(sess *session, st *stream, up upstream.Stream, calls []*call) (done bool, pending pendingCalls, waited time.Duration) {
	b, ok := up.(upstream.Buffered)
	if !ok || st.cs != nil {
		return false, pendingCalls{}, 0
	}
	lim := st.ring.Limits()
	inRing, messages := 0, 0 // what the input relayed so far may put in the ring
	for _, c := range calls {
		inRing += len(c.clientID)
	}
	var start time.Time
	for {
		n, m := b.Buffered()
		if n == 0 {
			window := s.cfg.WholeAnswerWindow
			if window <= 0 || s.shutting.Load() {
				// Every answer streams at once, or the server is shutting
				// down (the streamed path tells the client when to return).
				return false, pending, waited
			}
			if start.IsZero() {
				start = time.Now()
			}
			left := window - time.Since(start)
			got := left > 0 && b.AwaitBuffered(left)
			waited = time.Since(start)
			if !got {
				return false, pending, waited
			}
			n, m = b.Buffered()
		}
		inRing += n
		messages += m
		if n == 0 || messages > lim.HardCapacity || inRing > lim.HardMaxBytes {
			return false, pending, waited
		}
		if !pending.started() {
			pending = newPendingCalls(calls)
		}
		switch s.relayAnswers(sess, st, up, &pending, b) {
		case relayShort:
			continue
		case relayAnswered:
			s.finishStream(st)
			// The rest of the body (its end) is read so the connection is
			// pooled: here when it arrived too, or when the connection can
			// take it before its next request (nothing of it arrived yet),
			// else by a goroutine of its own.
			if b.RestArrived() || b.OweEnd() || !s.goOwned(func(context.Context) { upstream.Drain(up); _ = up.Close() }) {
				upstream.Drain(up)
				_ = up.Close()
			}
		default:
			_ = up.Close()
		}
		s.endAnswer(sess, st, calls)
		return true, pendingCalls{}, waited
	}
}

// relayResult is how relayAnswers stopped.
type relayResult int

const (
	relayAnswered relayResult = iota // every call answered
	relayEnded                       // the stream ended or the session did; the calls left were answered with errors if owed
	relayShort                       // (buffered only) the next message has not arrived
)

// relayAnswers copies up's messages into st's ring until every call in
// pending was answered (each answered one leaves pending). Calls the stream
// ended before get an error answer (answerOwed). With buffered set it reads
// only the input that arrived with the headers (NextBuffered).
func (s *Server) relayAnswers(sess *session, st *stream, up upstream.Stream, pending *pendingCalls, buffered upstream.Buffered) relayResult {
	p := s.parsers.Get().(*jsonrpc.Parser)
	defer s.parsers.Put(p)
	bp := bodyBufs.Get().(*[]byte)
	out := (*bp)[:0]
	defer func() {
		if cap(out) <= maxPooledBuf {
			*bp = out[:0]
			bodyBufs.Put(bp)
		}
	}()
	for pending.left > 0 {
		var msg []byte
		var err error
		if buffered != nil {
			msg, err = buffered.NextBuffered()
		} else {
			msg, err = up.Next()
		}
		if err != nil {
			if err == upstream.ErrNotBuffered {
				return relayShort
			}
			s.answerOwed(sess, st, pending, err)
			return relayEnded
		}
		if elems := batchElems(s, msg); elems != nil {
			// A batch (2025-03-26: "these responses MAY be batched"):
			// each message goes on its own, answers under their client ids.
			for _, e := range elems {
				if !s.relayOne(p, sess, st, pending, e, &out) {
					return relayEnded
				}
			}
			continue
		}
		if !s.relayOne(p, sess, st, pending, msg, &out) {
			return relayEnded
		}
	}
	return relayAnswered
}

// batchElems returns the messages of msg when it is a well-formed batch
// (each element's raw bytes, aliasing msg), nil otherwise.
func batchElems(s *Server, msg []byte) [][]byte {
	i := 0
	for i < len(msg) && (msg[i] == ' ' || msg[i] == '\t' || msg[i] == '\r' || msg[i] == '\n') {
		i++
	}
	if i >= len(msg) || msg[i] != '[' {
		return nil
	}
	q := s.parsers.Get().(*jsonrpc.Parser)
	defer s.parsers.Put(q)
	msgs, batch, perr := q.ParseEnvelope(msg)
	if perr != nil || !batch {
		return nil
	}
	elems := make([][]byte, len(msgs))
	for i := range msgs {
		elems[i] = msgs[i].Raw
	}
	return elems
}

// relayOne stores one upstream message of an answer stream in st's ring,
// an answer under its client's id (out is the scratch for it); it reports
// false when the stream or session ended, or when the calls left were all
// cancelled by the client (nothing is owed any more).
func (s *Server) relayOne(p *jsonrpc.Parser, sess *session, st *stream, pending *pendingCalls, msg []byte, out *[]byte) bool {
	class, key, respID, tok := classifyMessage(p, msg)
	if tok != nil && !sess.ephemeral {
		if pending.lateProgress(tok) && !sess.liveToken(tok) || sess.cancelledToken(tok) {
			// Progress of a batch's call answered already, or of a call
			// the client cancelled: progress only for live tokens, none
			// after the response (PROTOCOL.md section 2, rule 36).
			return true
		}
		msg = sess.progressOf(msg, tok, out) // under the client's token
	}
	if respID != nil && string(respID) != "null" {
		up, ok := parseUpID(respID)
		var c *call
		if ok {
			c = pending.take(up)
		}
		if c == nil {
			// Late, duplicate or for no call of this POST: a client
			// must never see two answers to one request.
			s.log.Debug("upstream answer for no pending call dropped", "session", shortID(sess.id), "stream", st.id, "id", string(respID))
			return true
		}
		*out = jsonrpc.AppendReplaced((*out)[:0], msg, respID, c.clientID)
		if !s.deliver(sess, st, class, key, *out, true, nil) {
			s.owedAtSuspend(sess, st, pending)
			return false
		}
		// Answered: the client may reuse the id at once.
		sess.endCall(c)
		// A batch's calls left may all have been cancelled meanwhile: the
		// upstream need not answer them, so nothing is owed any more.
		return pending.left == 0 || !sess.pendingCancelled(pending)
	}
	if sess.ephemeral && respID == nil {
		msg = subscriptionTagged(msg, pending, out)
	}
	if !s.deliver(sess, st, class, key, msg, true, nil) {
		s.owedAtSuspend(sess, st, pending)
		return false
	}
	return true
}

// subscriptionTagged returns a stateless request's notification with its
// subscriptionId (rule 45: the subscriptions/listen request's id, which the
// upstream saw as the gateway's) put back to the client's id, in out; other
// messages unchanged.
func subscriptionTagged(msg []byte, pending *pendingCalls, out *[]byte) []byte {
	raw, ok := jsonrpc.Lookup(msg, "params", "_meta", metaSubscriptionID)
	if !ok {
		return msg
	}
	up, ok := parseUpID(raw)
	if !ok {
		return msg
	}
	for c := range pending.all() {
		if c.upID == up {
			*out = jsonrpc.AppendReplaced((*out)[:0], msg, raw, c.clientID)
			return *out
		}
	}
	return msg
}

// answerOwed answers the calls still pending on an answer stream that
// ended early, so no call is left hanging: with -32603 and why (the
// upstream stream broke, or the session ended). A stream that ended because
// the upstream lost the session (a stdio child exited, a legacy upstream's
// stream could not be reopened, a resume got 404) then ends the session, as
// a request finding it gone does: its streams end, so a client holding only
// its standalone stream learns it at once (its next GET gets 404).
func (s *Server) answerOwed(sess *session, st *stream, pending *pendingCalls, err error) {
	if sess.listenEnded.Load() {
		// The gateway ended the listen (a drain): its graceful end is the
		// request's response, resultType "complete" (PROTOCOL.md section
		// 2, rule 45); the client listens again.
		for c := range pending.all() {
			e := append(append([]byte(`{"jsonrpc":"2.0","id":`), c.clientID...), `,"result":{"resultType":"complete"}}`...)
			if s.pushMust(st, e, true, nil) != nil {
				return
			}
		}
		return
	}
	if errors.Is(err, upstream.ErrSessionGone) && !sess.ephemeral && sess.context().Err() == nil {
		defer s.upstreamLost(sess, st, err) // after the calls got their errors (a legacy stream ends with the session)
	}
	if sess.context().Err() != nil {
		sess.mu.Lock()
		why := "the session ended (" + sess.closeReason.String() + ") before the response"
		suspended := sess.suspended
		sess.mu.Unlock()
		if suspended {
			if s.clu != nil {
				return // another node continues the stream (cluster.go)
			}
			why = upstreamRestarted // the session goes on after the restart
		}
		for c := range pending.all() {
			// The session is gone: no waiting for room, past the soft
			// limits if need be; a client still connected reads it.
			e := jsonrpc.AppendError(nil, c.clientID, jsonrpc.CodeInternalError, why, nil)
			if seq, _, perr := st.ring.Push(ringbuf.MustDeliver, 0, e); perr == nil {
				if st.cs != nil {
					s.published(st, seq, ringbuf.MustDeliver, 0, e)
				}
				st.notify()
			} else if suspended {
				s.log.Warn("a call cut short by the restart cannot be told so: its stream is full", "session", shortID(sess.id), "stream", st.id, "err", perr)
			}
		}
		return
	}
	owed := false
	for c := range pending.all() {
		if !sess.cancelledCall(c) {
			owed = true
			break
		}
	}
	if !owed {
		return // every call left was cancelled by the client: nothing is owed
	}
	s.metrics.upstreamErrors[upErrStreamEnded].Add(1)
	s.log.Warn("upstream answer stream ended early", "session", shortID(sess.id), "stream", st.id, "err", err)
	for c := range pending.all() {
		if sess.cancelledCall(c) {
			continue
		}
		e := jsonrpc.AppendError(nil, c.clientID, jsonrpc.CodeInternalError, "upstream stream ended before the response", nil)
		if s.pushMust(st, e, true, nil) != nil {
			return
		}
	}
}

// upstreamLost ends sess because its upstream side is gone (err wraps
// upstream.ErrSessionGone), found so by the answer stream of st (counted
// there as the stream's early end).
func (s *Server) upstreamLost(sess *session, st *stream, err error) {
	if sess.context().Err() != nil {
		return // ended meanwhile, or suspended by a shutdown keeping it for a restart
	}
	s.log.Warn("upstream lost the session during a call: session ended", "session", shortID(sess.id), "stream", st.id, "err", err)
	s.endSession(context.Background(), sess, CloseUpstreamGone, upstreamGone)
}

// owedAtSuspend answers the calls still pending on an answer stream whose
// pump was stopped while it waited for room in the ring (a shutdown that
// keeps the session for a restart): the restored stream holds an error for
// each, so no call hangs. A session that ended owes nothing: it is gone.
func (s *Server) owedAtSuspend(sess *session, st *stream, pending *pendingCalls) {
	sess.mu.Lock()
	suspended := sess.suspended
	sess.mu.Unlock()
	if suspended {
		s.answerOwed(sess, st, pending, nil)
	}
}

// deliver stores one upstream message in st's ring: droppable ones as the
// drop policy says, must-deliver ones waiting for room. An answer too large
// for any ring is replaced by a JSON-RPC error for its request, and a
// server-to-client request that large is refused upstream, so nothing
// vanishes silently. It returns false when the stream or session ended.
// busy says whether the caller holds one of the session's busy counts
// (a call in flight), which it gives up while it waits. h is the standalone
// stream pump's writer hold (writerHold), nil elsewhere.
func (s *Server) deliver(sess *session, st *stream, class ringbuf.Class, key uint64, msg []byte, busy bool, h *writerHold) bool {
	if class == ringbuf.MustDeliver {
		msg = tagServerRequests(msg, sess.incarnationTag()) // incarnation.go
	}
	if class == ringbuf.Droppable {
		s.push(st, class, key, msg, h)
		return true
	}
	err := s.pushMust(st, msg, busy, h)
	if !errors.Is(err, ringbuf.ErrOverflow) {
		return err == nil
	}
	return s.overflowed(sess, st, msg, busy, h)
}

// overflowed handles a must-deliver message larger than st's byte limit
// (ringbuf.ErrOverflow): an answer becomes an error, a request is refused
// upstream, anything else is dropped; false when the session ended. Out of
// deliver, whose frame an event's stack then does not carry (a parser and
// the log calls' arguments took 864 bytes of it).
//
//go:noinline
func (s *Server) overflowed(sess *session, st *stream, msg []byte, busy bool, h *writerHold) bool {
	h.flush() // what follows may wait on the upstream
	s.metrics.overflows.Add(1)
	limit := st.ring.Limits().HardMaxBytes
	var p jsonrpc.Parser
	msgs, _, perr := p.Parse(msg)
	switch {
	case perr != nil || len(msgs) != 1:
		s.log.Error("stream overflow: an unreadable upstream message larger than the stream's byte limit was dropped",
			"session", shortID(sess.id), "stream", st.id, "bytes", len(msg), "limit", limit)
		return true
	case msgs[0].Kind == jsonrpc.KindResponse || msgs[0].Kind == jsonrpc.KindError:
		s.log.Warn("answer larger than the stream's byte limit: the client gets an error instead",
			"session", shortID(sess.id), "stream", st.id, "bytes", len(msg), "limit", limit)
		e := jsonrpc.AppendError(nil, msgs[0].ID, jsonrpc.CodeInternalError,
			"the answer ("+strconv.Itoa(len(msg))+" bytes) exceeds the gateway's stream limit ("+strconv.Itoa(limit)+" bytes, -ring-bytes)", nil)
		return s.pushMust(st, e, busy, nil) == nil
	case msgs[0].Kind == jsonrpc.KindRequest:
		s.log.Warn("server-to-client request larger than the stream's byte limit: refused upstream",
			"session", shortID(sess.id), "stream", st.id, "bytes", len(msg), "limit", limit)
		e := jsonrpc.AppendError(nil, msgs[0].ID, jsonrpc.CodeInternalError,
			"request too large for the gateway to deliver ("+strconv.Itoa(len(msg))+" bytes, limit "+strconv.Itoa(limit)+")", nil)
		if reply, err := sess.up.Send(sess.context(), e); err == nil && reply.Stream != nil {
			_ = reply.Stream.Close()
		}
		return true
	default:
		s.log.Error("stream overflow: a must-deliver notification larger than the stream's byte limit was dropped",
			"session", shortID(sess.id), "stream", st.id, "method", string(msgs[0].Method), "bytes", len(msg), "limit", limit)
		return true
	}
}

// pushMust stores a must-deliver message in st's ring (droppable events
// make room for it). While the ring is full up to its hard limits behind an
// undelivered must-deliver event, it waits for the reader (backpressure: the
// caller stops reading its upstream, which TCP then pushes back to the
// server) until room appears or the stream or session ends. A waiting call
// does not keep an abandoned session alive: with busy set, the caller's
// busy count is given up while it waits, so only an attached reader does.
func (s *Server) pushMust(st *stream, msg []byte, busy bool, h *writerHold) error {
	if l := st.sess.legacy; l != nil {
		// A legacy session's one stream has several producers, and a ring
		// wakes one waiting producer at a time: they take turns.
		l.pushMu.Lock()
		defer l.pushMu.Unlock()
	}
	for {
		seq, out, err := st.ring.TryPushMust(msg)
		if out == ringbuf.DroppedOldest {
			s.accountDroppedOldest(st)
		}
		if err == nil {
			if st.cs != nil {
				s.published(st, seq, ringbuf.MustDeliver, 0, msg)
			}
			st.notifyHeld(h)
			s.metrics.eventsPushed.Add(1)
			return nil
		}
		if !errors.Is(err, ringbuf.ErrNoRoom) {
			return err
		}
		h.flush() // the writer makes the room
		s.metrics.backpressure.Add(1)
		if busy {
			st.sess.busy.Add(-1)
		}
		select {
		case <-st.ring.Room():
		case <-st.sess.context().Done():
		}
		if busy {
			st.sess.busy.Add(1)
		}
		if err := st.sess.context().Err(); err != nil {
			return err
		}
	}
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
// life of the session. After a break it asks for the stream after the
// last event read (stream.upLastID): an upstream that can resume replays
// what it sent meanwhile; one that cannot from there gets a fresh stream.
func (s *Server) connectStandalone(ctx context.Context, sess *session, st *stream, backoff time.Duration) {
	for {
		if sess.context().Err() != nil || ctx.Err() != nil || s.handingOver() || st.handedOver() {
			return
		}
		up, err := s.listenUpstream(sess, st.upstreamLastID())
		switch {
		case errors.Is(err, upstream.ErrNotSupported):
			return // the stream stays open for heartbeats; nothing feeds it
		case errors.Is(err, upstream.ErrSessionGone):
			s.endSession(context.Background(), sess, CloseUpstreamGone, upstreamGone)
			return
		case err != nil:
			s.log.Debug("upstream standalone stream failed", "session", shortID(sess.id), "err", err)
			if !sleepCtx(sess.context(), backoff) {
				return
			}
			backoff = min(backoff*2, maxBackoff)
			continue
		}
		st.setUpstream(up)
		if sess.context().Err() != nil || st.handedOver() { // closed or handed over while connecting
			_ = up.Close()
			return
		}
		if !s.addOwned() {
			_ = up.Close()
			return
		}
		if p, ok := up.(upstream.Parker); ok {
			p.SetIdle(standaloneIdle)
		}
		// Legacy sessions' streams are fed by more than the pump
		// (legacysse.go): no hold there. Decided here once, rather than
		// looking at the session (a cache miss) at every event.
		h, ok := up.(upstream.WaitHooker)
		st.holdOK = ok && sess.legacy == nil && h.OnWait(st)
		if !s.parkStandalone(sess, st, up, backoff) {
			// A plain go statement: no closure frames above the reader,
			// which parks for most of its life (see pumpStandalone).
			go s.readStandalone(sess, st, up, backoff)
		}
		return
	}
}

// listenUpstream opens the upstream's standalone stream, after lastID when
// there is one and the upstream can resume.
func (s *Server) listenUpstream(sess *session, lastID string) (upstream.Stream, error) {
	if r, ok := sess.up.(upstream.ListenResumer); ok && lastID != "" {
		up, err := r.ListenAfter(sess.context(), lastID)
		var se *upstream.StatusError
		if !errors.As(err, &se) {
			return up, err
		}
		s.log.Debug("upstream could not resume its standalone stream: opening a fresh one", "session", shortID(sess.id), "status", se.Status)
	}
	return sess.up.Listen(sess.context())
}

// standaloneIdle is how long a standalone stream's reader waits for input
// on a goroutine before it parks the stream in the upstream transport's
// poller (upstream.Parker) and exits (after between 1 and 1.25 s: the
// transport's idle watch looks every quarter period): an idle stream holds
// no goroutine, and a stream with events at least every second never
// parks. A new
// stream parks as soon as what it sent first (a greeting, a priming event)
// is read (SetIdle), so opening many does not hold a goroutine each.
const standaloneIdle = time.Second

// readStandalone copies the upstream's standalone stream into stream 0
// until it ends, then reconnects after a backoff, or after the upstream's
// retry hint if that is longer. It runs on an owned goroutine counted by
// addOwned; while the stream is parked (idle) the count stays, and the
// reader resumes on a new goroutine.
func (s *Server) readStandalone(sess *session, st *stream, up upstream.Stream, backoff time.Duration) {
	for {
		got, idle := s.pumpStandalone(st, up)
		if got {
			backoff = minBackoff
		}
		if !idle {
			break
		}
		if s.parkStandalone(sess, st, up, backoff) {
			return
		}
	}
	defer s.wg.Done()
	noteLastID(st, up)
	wait := backoff
	if h, ok := up.(upstream.RetryHinter); ok {
		// The upstream's reconnection time (its SSE retry field, bounded
		// by the transport), never less than the backoff: PROTOCOL.md
		// section 3, rule 4.
		wait = max(wait, h.RetryDelay())
	}
	_ = up.Close()
	if !sleepCtx(sess.context(), wait) || s.ctx.Err() != nil {
		return
	}
	next := min(backoff*2, maxBackoff)
	s.goOwned(func(ctx context.Context) { s.connectStandalone(ctx, sess, st, next) })
}

// noteLastID keeps the upstream's id of the last event read of up, if it
// had one, for the next connection of the standalone stream. Out of
// readStandalone so that frame stays small (see pumpStandalone).
//
//go:noinline
func noteLastID(st *stream, up upstream.Stream) {
	if ider, ok := up.(upstream.EventIDer); ok {
		if id := ider.LastEventID(); id != "" {
			st.upLastID.Store(&id)
		}
	}
}

// upstreamLastID is the upstream's id of the last event read of the
// standalone stream, "" if none.
func (st *stream) upstreamLastID() string {
	if p := st.upLastID.Load(); p != nil {
		return *p
	}
	return ""
}

// pumpStandalone pushes the stream's messages into st until it ends or
// went idle (upstream.ErrIdle), and reports whether any arrived. A
// standalone stream's goroutine waits below this frame between events;
// keeping the frames above the wait small (a pooled parser, no closures)
// lets the runtime shrink its stack to the minimum.
func (s *Server) pumpStandalone(st *stream, up upstream.Stream) (got, idle bool) {
	for {
		msg, err := up.Next()
		if err != nil {
			st.hold.flush()
			return got, err == upstream.ErrIdle
		}
		got = true
		if st.cs != nil {
			// Clustered: the event is stored with the upstream's id of it,
			// where a node taking the session over resumes the upstream.
			noteLastID(st, up)
		}
		if !s.pushStandalone(st, msg) {
			st.hold.flush()
			return got, false
		}
	}
}

// parkStandalone parks an idle standalone stream (upstream.Parker): its
// reader resumes on a new goroutine once the upstream sends, ends the
// stream or it is closed. False when it cannot park: the caller reads on.
func (s *Server) parkStandalone(sess *session, st *stream, up upstream.Stream, backoff time.Duration) bool {
	p, ok := up.(upstream.Parker)
	return ok && p.Park(func() { s.readStandalone(sess, st, up, backoff) })
}

// pushStandalone classifies and stores one message of the upstream's
// standalone stream; false when the session ended. An answer there (not
// where the spec puts it) still gets its client's id back, or is dropped
// if it answers no call in flight; so is progress whose token no call in
// flight carries (PROTOCOL.md section 2, rule 36: none after the response).
func (s *Server) pushStandalone(st *stream, msg []byte) bool {
	p := s.parsers.Get().(*jsonrpc.Parser)
	class, key, respID, tok := classifyMessage(p, msg)
	if respID != nil || tok != nil {
		var keep bool
		if msg, keep = readdressed(st.sess, msg, respID, tok); !keep {
			s.parsers.Put(p)
			return true
		}
	}
	s.parsers.Put(p)
	return s.deliver(st.sess, st, class, key, msg, false, st.heldBy())
}

// readdressed gives an answer on the standalone stream its client's id and
// a call's progress its client's token; false when the message answers no
// call in flight or no call in flight carries its token (then dropped).
// Out of pushStandalone, so an event's stack does not carry its frame.
//
//go:noinline
func readdressed(sess *session, msg, respID, tok []byte) ([]byte, bool) {
	if respID != nil && string(respID) != "null" {
		c := sess.callOf(respID)
		if c == nil {
			return nil, false
		}
		msg = jsonrpc.AppendReplaced(nil, msg, respID, c.clientID)
	}
	if tok != nil {
		if !sess.liveToken(tok) {
			return nil, false
		}
		var out []byte
		msg = sess.progressOf(msg, tok, &out) // a call's progress, under the client's token
	}
	return msg, true
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

// push stores one droppable upstream message in st's ring and applies the
// drop policy's outcome.
func (s *Server) push(st *stream, class ringbuf.Class, key uint64, msg []byte, h *writerHold) {
	seq, out, err := st.ring.Push(class, key, msg)
	if err != nil {
		return // closed
	}
	if seq != 0 { // stored or coalesced; a refused event changed nothing
		if st.cs != nil {
			s.published(st, seq, class, key, msg)
		}
		st.notifyHeld(h)
		s.metrics.eventsPushed.Add(1)
	}
	switch out {
	case ringbuf.Coalesced:
		s.metrics.eventsCoalesced.Add(1)
		// Making byte room for the larger update may have dropped older
		// undelivered events (drop-oldest).
		s.accountDroppedOldest(st)
	case ringbuf.DroppedOldest:
		s.accountDroppedOldest(st)
	case ringbuf.DroppedNewest:
		s.metrics.droppedNewest.Add(1)
	case ringbuf.MustDisconnect:
		if class == ringbuf.Droppable {
			s.metrics.droppedCut.Add(1)
		}
		if st.cut(CloseSlowConsumer) {
			s.metrics.slowDisconnects.Add(1)
		}
	}
}

// accountDroppedOldest adds the ring's new drops of undelivered events to
// the metrics: one push may drop several, so the ring's own count is taken.
// A stream may have several producers (a legacy session's one stream,
// legacysse.go; announceReinit for a moment), so the seen mark only moves
// forward and each drop is counted once.
func (s *Server) accountDroppedOldest(st *stream) {
	for {
		seen, total := st.droppedOldestSeen.Load(), st.ring.Stats().DroppedOldest
		if total <= seen {
			return
		}
		if st.droppedOldestSeen.CompareAndSwap(seen, total) {
			s.metrics.droppedOldest.Add(total - seen)
			return
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
	switch {
	case st.cs == nil:
		st.sess.livePost.Add(-1)
	case !st.cs.mirror: // a mirror's place was never counted
		s.publishEnd(st)
		st.sess.livePost.Add(-1)
	}
	st.sess.mu.Lock()
	if st.sess.streams.get(st.id) == st {
		st.sess.addFinishedLocked(st.id)
		st.sess.pruneFinishedLocked()
	}
	st.sess.mu.Unlock()
}

var coalesceSeed = maphash.MakeSeed()

// classify decides a message's ring class and coalescing key, and returns
// the id of a response (nil otherwise). Responses, server-to-client
// requests, cancellations and subscription acknowledgements must be
// delivered (PROTOCOL.md section 3, rule 9); other notifications may be
// dropped; progress coalesces per token, list_changed per kind. Where a
// syntax error is does not matter here, so params are only looked into
// when a token is needed (ParseEnvelope).
func classify(p *jsonrpc.Parser, msg []byte) (ringbuf.Class, uint64, []byte) {
	class, key, respID, _ := classifyMessage(p, msg)
	return class, key, respID
}

// classifyMessage is classify that also returns the progress token of a
// notifications/progress (raw JSON aliasing msg; nil otherwise).
func classifyMessage(p *jsonrpc.Parser, msg []byte) (class ringbuf.Class, key uint64, respID, token []byte) {
	msgs, batch, perr := p.ParseEnvelope(msg)
	if perr != nil || batch || len(msgs) != 1 {
		return ringbuf.MustDeliver, 0, nil, nil // unknown shape: never drop it
	}
	m := &msgs[0]
	switch m.Kind {
	case jsonrpc.KindResponse, jsonrpc.KindError:
		return ringbuf.MustDeliver, 0, m.ID, nil
	case jsonrpc.KindRequest:
		return ringbuf.MustDeliver, 0, nil, nil
	}
	method := string(m.Method)
	switch {
	case method == "notifications/progress" && m.ProgressToken != nil:
		return ringbuf.Droppable, coalesceKey('p', m.ProgressToken), nil, m.ProgressToken
	case method == "notifications/cancelled", method == "notifications/subscriptions/acknowledged":
		return ringbuf.MustDeliver, 0, nil, nil
	case len(method) > len("/list_changed") && method[len(method)-len("/list_changed"):] == "/list_changed":
		return ringbuf.Droppable, coalesceKey('l', m.Method), nil, nil
	case method == "notifications/resources/updated":
		if uri, ok := jsonrpc.Lookup(m.Raw, "params", "uri"); ok {
			return ringbuf.Droppable, coalesceKey('u', uri), nil, nil
		}
	}
	return ringbuf.Droppable, 0, nil, nil
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
