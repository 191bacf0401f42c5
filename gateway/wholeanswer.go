package gateway

import (
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// Most SSE-answered calls are short: the upstream sends the response (and
// perhaps a few notifications) and ends its stream at once. Streaming such
// an answer costs the client connection four writes (headers, priming
// event, events, last chunk), two socket options and a reader wake-up per
// event. So the handler first waits up to Config.WholeAnswerWindow for
// the answer stream to finish; if it does, the whole stream (priming event
// included, the same bytes the streamed answer would carry) goes out as
// one text/event-stream body with a Content-Length, in one write, like a
// JSON answer. The events stay in the stream's ring, delivered, for the
// retention time: a client that loses the body mid-way still resumes with
// Last-Event-ID exactly as from a streamed answer. An answer that takes
// longer is streamed as before, its priming event at most the window late.
// An answer that arrived whole with its response headers is relayed by the
// handler itself (relayBuffered, pump.go): its ring is closed before the
// wait begins.

// timers keeps stopped timers for the window waits (one per call would
// otherwise be allocated).
var timers = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// bodyBufs holds scratch buffers: the whole answers' writes, the pumps'
// rewritten answers. One that grew past maxPooledBuf is not kept.
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, chunkBufSize); return &b }}

const maxPooledBuf = 64 << 10

// wholeConns keeps the drain state of whole answers for reuse (its encode
// function is bound once).
var wholeConns = sync.Pool{New: func() any { return new(clientConn) }}

// finishedWithin waits up to d for st's ring to close (every call of the
// POST answered and the stream finished) and, on a cluster node, for
// JetStream to acknowledge every event in it: a reader on this node gets
// an event only once it is stored (stream.readLimit), so a whole answer
// written before would lack it, and the response would be lost (a
// forwarded call's relay brings the response and the stream's end
// together, well before the store acknowledges them). It gives up at once
// when the server starts shutting down: the streamed path tells the client
// when to come back. Given up, the answer is streamed; its writer waits
// for the acknowledgements.
func (s *Server) finishedWithin(st *stream, d time.Duration) bool {
	if st.finished() {
		return true
	}
	if d <= 0 {
		return false
	}
	t := timers.Get().(*time.Timer)
	t.Reset(d)
	defer func() {
		t.Stop()
		timers.Put(t)
	}()
	for {
		select {
		case <-st.ring.Wait():
		case <-st.storedWait():
		case <-t.C:
			return st.finished()
		case <-s.streamsDone:
			return false
		}
		if st.finished() {
			return true
		}
	}
}

// finished reports whether st's ring is closed and a reader on this node
// may have every event in it.
func (st *stream) finished() bool { return st.ring.Closed() && st.allReadable() }

// answerWhole answers a POST with its whole SSE answer stream as one body
// if the stream finishes within Config.WholeAnswerWindow (see above), less
// what the request waited for it already (waited); it reports whether it
// did. prefix is the priming event (nil if none), plain says events carry
// no ids (the stateless revision).
func (s *Server) answerWhole(ctx *fasthttp.RequestCtx, st *stream, prefix []byte, plain bool, waited time.Duration) bool {
	if s.cfg.WholeAnswerWindow < 0 || !s.finishedWithin(st, s.cfg.WholeAnswerWindow-waited) {
		return false
	}
	c := wholeConns.Get().(*clientConn)
	defer func() {
		*c = clientConn{}
		wholeConns.Put(c)
	}()
	c.init(s, st, ctx.Conn(), nil, 0, nil)
	c.plain = plain
	s.metrics.streamsOpened.Add(1)
	s.cfg.Hooks.StreamOpened(st.info())
	ctx.Response.AppendBody(prefix) // copied: the caller's may be on its stack
	bp := bodyBufs.Get().(*[]byte)
	for {
		n, err, ready := c.fill((*bp)[:chunkBufSize])
		if n > 0 {
			ctx.Response.AppendBody((*bp)[:n])
		}
		if err != nil || !ready {
			// The ring is closed: fill ends with io.EOF once everything
			// (or everything still there) was handed out.
			break
		}
	}
	bodyBufs.Put(bp)
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	s.metrics.status(fasthttp.StatusOK)
	reason := c.closeReason()
	s.metrics.streamClosed(reason)
	s.cfg.Hooks.StreamClosed(st.info(), reason)
	sess := st.sess
	if sess.ephemeral {
		s.endEphemeral(sess) // a stateless request ends with its answer
	}
	sess.touch(s.clock.Now())
	return true
}
