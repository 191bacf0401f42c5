package gateway

import (
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
)

// A call to a stdio or legacy HTTP+SSE upstream is answered by a stream of
// the messages routed to it (upstream/demux.go), even when all there is is
// its response. Most calls answer at once: for those the gateway waits up
// to Config.WholeAnswerWindow for the call's first message, and if that is its
// response it answers with JSON, with no SSE stream, ring, pump goroutine
// or chunked writes. Anything else first (a progress notification, a
// server-to-client request), or nothing within the window, opens the SSE
// answer as usual, with that message first: a call that takes longer gets
// its stream (and, for 2025-11-25 clients, the priming event that makes it
// resumable) after the window at the latest.

// timedNexter is an upstream stream that can wait for its next message for
// a bounded time (the stdio and legacy HTTP+SSE transports' call streams).
type timedNexter interface {
	NextWithin(d time.Duration) (msg []byte, ok bool, err error)
}

// firstThen is a stream whose first message was read already.
type firstThen struct {
	upstream.Stream
	first []byte
}

func (f *firstThen) Next() ([]byte, error) {
	if m := f.first; m != nil {
		f.first = nil
		return m, nil
	}
	return f.Stream.Next()
}

// earlyAnswer waits up to Config.WholeAnswerWindow for the first message of up,
// the answer stream of the one call c. If it is c's response, it returns
// that response under the client's id, and up is done with (drained and
// closed). Otherwise it returns the stream to pump, which yields what was
// read first.
func (s *Server) earlyAnswer(p *jsonrpc.Parser, up upstream.Stream, c *call) ([]byte, upstream.Stream) {
	tn, ok := up.(timedNexter)
	if !ok || s.cfg.WholeAnswerWindow < 0 {
		return nil, up
	}
	msg, ok, err := tn.NextWithin(s.cfg.WholeAnswerWindow)
	if !ok || err != nil {
		return nil, up // the pump sees the same end again
	}
	if _, _, respID := classify(p, msg); respID != nil {
		if id, ok := parseUpID(respID); ok && id == c.upID {
			answer := jsonrpc.AppendReplaced(make([]byte, 0, len(msg)+len(c.clientID)), msg, respID, c.clientID)
			upstream.Drain(up)
			_ = up.Close()
			return answer, nil
		}
	}
	return nil, &firstThen{Stream: up, first: msg}
}

// answerEarly answers a POST's single call with JSON if its response comes
// at once (earlyAnswer); it reports whether it did. Otherwise up is the
// stream to open the SSE answer with. batch says the POST was a batch (of
// one request): its answer is an array too (JSON-RPC 2.0 section 6).
func (s *Server) answerEarly(ctx *fasthttp.RequestCtx, sess *session, up upstream.Stream, calls []*call, batch bool) (bool, upstream.Stream) {
	if len(calls) != 1 {
		return false, up
	}
	p := s.parsers.Get().(*jsonrpc.Parser)
	defer s.parsers.Put(p)
	sess.busy.Add(1) // a call in flight
	answer, rest := s.earlyAnswer(p, up, calls[0])
	sess.busy.Add(-1)
	if answer == nil {
		return false, rest
	}
	s.releaseAnswer(sess)
	sess.endCalls(calls)
	if batch {
		answer = append(append(append(make([]byte, 0, len(answer)+2), '['), answer...), ']')
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.Response.SetBodyRaw(answer)
	s.metrics.status(fasthttp.StatusOK)
	return true, nil
}

// legacyAnswerEarly is answerEarly for a legacy session: the response goes
// into the session's stream, with no pump goroutine.
func (s *Server) legacyAnswerEarly(sess *session, st *stream, up upstream.Stream, calls []*call) (bool, upstream.Stream) {
	if len(calls) != 1 {
		return false, up
	}
	p := s.parsers.Get().(*jsonrpc.Parser)
	answer, rest := s.earlyAnswer(p, up, calls[0])
	s.parsers.Put(p)
	if answer == nil {
		return false, rest
	}
	s.releaseAnswer(sess)
	s.deliver(sess, st, ringbuf.MustDeliver, 0, answer, false, nil)
	sess.endCalls(calls)
	return true, nil
}
