package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/sse"
	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
	"github.com/mcpgate/mcpgate/shard"
)

// Handler serves the MCP endpoint. It can be mounted in another fasthttp
// server; Serve uses it directly.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	if string(ctx.Path()) != s.cfg.Path {
		if s.cfg.MetricsPath != "" && string(ctx.Path()) == s.cfg.MetricsPath && ctx.IsGet() {
			ctx.SetContentType("text/plain; version=0.0.4")
			s.WriteMetrics(ctx)
			return
		}
		s.fail(ctx, fasthttp.StatusNotFound, nil, jsonrpc.CodeServerError, "Not Found: the MCP endpoint is "+s.cfg.Path, nil)
		return
	}
	host := ctx.Request.Header.Host()
	if !s.origin.hostAllowed(host) {
		s.fail(ctx, fasthttp.StatusForbidden, nil, jsonrpc.CodeServerError, "Forbidden: Host not allowed", nil)
		return
	}
	if o := ctx.Request.Header.Peek("Origin"); len(o) > 0 && !s.origin.originAllowed(o, host) {
		s.fail(ctx, fasthttp.StatusForbidden, nil, jsonrpc.CodeServerError, "Forbidden: Origin not allowed", nil)
		return
	}
	if s.shutting.Load() {
		ctx.Response.Header.Set("Retry-After", "1")
		s.fail(ctx, fasthttp.StatusServiceUnavailable, nil, jsonrpc.CodeServerError, "Service Unavailable: shutting down", nil)
		return
	}
	switch string(ctx.Method()) {
	case fasthttp.MethodPost:
		s.handlePost(ctx)
	case fasthttp.MethodGet:
		s.handleGet(ctx)
	case fasthttp.MethodDelete:
		s.handleDelete(ctx)
	default:
		ctx.Response.Header.Set("Allow", "GET, POST, DELETE")
		s.fail(ctx, fasthttp.StatusMethodNotAllowed, nil, jsonrpc.CodeServerError, "Method Not Allowed", nil)
	}
}

// lookup finds the session named by the Mcp-Session-Id header and checks
// the MCP-Protocol-Version header. It answers the error itself and returns
// nil when the request must stop. id is the request id for error bodies.
func (s *Server) lookup(ctx *fasthttp.RequestCtx, id []byte) *session {
	sid := ctx.Request.Header.Peek("Mcp-Session-Id")
	if len(sid) == 0 {
		s.fail(ctx, fasthttp.StatusBadRequest, id, jsonrpc.CodeServerError, "Bad Request: Mcp-Session-Id header is required", nil)
		return nil
	}
	if !validSessionID(sid) {
		s.fail(ctx, fasthttp.StatusBadRequest, id, jsonrpc.CodeServerError, "Bad Request: malformed Mcp-Session-Id", nil)
		return nil
	}
	sess, ok := s.store.GetBytes(sid)
	if !ok {
		// id null on purpose: an id-bearing 404 reads as a per-call error to
		// the Go SDK, while the session is in fact gone for every call.
		s.fail(ctx, fasthttp.StatusNotFound, nil, jsonrpc.CodeSessionNotFound, "Session not found", nil)
		return nil
	}
	if v := ctx.Request.Header.Peek("MCP-Protocol-Version"); len(v) > 0 && !versionSupported(v) {
		s.unsupportedVersion(ctx, id, v)
		return nil
	}
	sess.touch(s.clock.Now())
	return sess
}

// handlePost forwards a client message upstream and relays the answer.
func (s *Server) handlePost(ctx *fasthttp.RequestCtx) {
	if !mediaIs(mediaType(ctx.Request.Header.ContentType()), "application/json") {
		s.fail(ctx, fasthttp.StatusUnsupportedMediaType, nil, jsonrpc.CodeServerError, "Unsupported Media Type: Content-Type must be application/json", nil)
		return
	}
	if json, ev := accepts(ctx.Request.Header.Peek("Accept")); !json || !ev {
		s.fail(ctx, fasthttp.StatusNotAcceptable, nil, jsonrpc.CodeServerError, "Not Acceptable: Accept must include application/json and text/event-stream", nil)
		return
	}
	if len(ctx.Request.Header.Peek("Last-Event-ID")) > 0 {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: Last-Event-ID is only valid on GET", nil)
		return
	}
	body := ctx.PostBody()
	if len(bytes.TrimSpace(body)) == 0 {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: empty body", nil)
		return
	}
	p := s.parsers.Get().(*jsonrpc.Parser)
	defer s.parsers.Put(p)
	msgs, batch, perr := p.Parse(body)
	if perr != nil {
		s.fail(ctx, fasthttp.StatusBadRequest, perr.ID, perr.Code, perr.Message, nil)
		return
	}
	var firstID []byte
	if !batch {
		firstID = msgs[0].ID
	}
	for i := range msgs {
		if string(msgs[i].Method) == "initialize" {
			if batch {
				s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeInvalidRequest, "Invalid Request: initialize must not be batched", nil)
				return
			}
			s.handleInitialize(ctx, body, firstID)
			return
		}
	}
	sess := s.lookup(ctx, firstID)
	if sess == nil {
		return
	}
	if !batch && msgs[0].Kind == jsonrpc.KindRequest && string(msgs[0].Method) == "ping" {
		// ping is answered by the gateway at once: the client's hop is alive.
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("application/json")
		out := append(make([]byte, 0, 48+len(firstID)), `{"jsonrpc":"2.0","id":`...)
		out = append(out, firstID...)
		ctx.Response.SetBodyRaw(append(out, `,"result":{}}`...))
		s.metrics.status(fasthttp.StatusOK)
		return
	}
	if batch && sess.version != "2025-03-26" {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeInvalidRequest,
			"Invalid Request: batches are not supported in protocol version "+sess.version, nil)
		return
	}
	var ids [][]byte
	for i := range msgs {
		if msgs[i].Kind == jsonrpc.KindRequest {
			ids = append(ids, bytes.Clone(msgs[i].ID))
		}
	}
	if len(ids) > 0 && !sess.addInflight(ids) {
		s.fail(ctx, fasthttp.StatusBadRequest, firstID, jsonrpc.CodeInvalidRequest, "Invalid Request: request id already in flight in this session", nil)
		return
	}
	s.metrics.requests.Add(1)
	sess.busy.Add(1)
	reply, err := sess.up.Send(context.Background(), body)
	sess.busy.Add(-1)
	if err != nil {
		sess.removeInflight(ids)
		s.upstreamFailed(ctx, sess, firstID, err)
		return
	}
	switch {
	case reply.Stream != nil:
		s.openPostStream(ctx, sess, reply.Stream, ids, firstID)
	case reply.JSON != nil:
		sess.removeInflight(ids)
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(reply.JSON)
		s.metrics.status(fasthttp.StatusOK)
	default:
		sess.removeInflight(ids)
		if len(ids) > 0 {
			s.metrics.upstreamErrors.Add(1)
			s.fail(ctx, fasthttp.StatusBadGateway, firstID, jsonrpc.CodeInternalError, "Bad Gateway: upstream accepted a request without answering it", nil)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusAccepted)
		s.metrics.status(fasthttp.StatusAccepted)
	}
}

// upstreamFailed maps an upstream error to the client's answer.
func (s *Server) upstreamFailed(ctx *fasthttp.RequestCtx, sess *session, id []byte, err error) {
	s.metrics.upstreamErrors.Add(1)
	var se *upstream.StatusError
	switch {
	case errors.Is(err, upstream.ErrSessionGone):
		s.endSession(context.Background(), sess, CloseUpstreamGone, false)
		s.fail(ctx, fasthttp.StatusNotFound, nil, jsonrpc.CodeSessionNotFound, "Session not found: the upstream server ended it", nil)
	case errors.As(err, &se) && se.Body != nil && se.Status >= 400 && se.Status < 500 && se.Status != fasthttp.StatusNotFound:
		// The upstream refused the client's message with a JSON-RPC error: relay it.
		ctx.SetStatusCode(se.Status)
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(se.Body)
		s.metrics.status(se.Status)
	case errors.Is(err, upstream.ErrTimeout):
		s.log.Warn("upstream timeout", "session", sess.id, "err", err)
		s.fail(ctx, fasthttp.StatusGatewayTimeout, id, jsonrpc.CodeInternalError, "Gateway Timeout: upstream did not answer in time", nil)
	default:
		s.log.Warn("upstream error", "session", sess.id, "err", err)
		s.fail(ctx, fasthttp.StatusBadGateway, id, jsonrpc.CodeInternalError, "Bad Gateway: upstream error", nil)
	}
}

// handleInitialize opens an upstream session and issues a gateway session.
func (s *Server) handleInitialize(ctx *fasthttp.RequestCtx, body, id []byte) {
	if len(ctx.Request.Header.Peek("Mcp-Session-Id")) > 0 {
		s.fail(ctx, fasthttp.StatusBadRequest, id, jsonrpc.CodeInvalidRequest, "Invalid Request: initialize must not carry Mcp-Session-Id", nil)
		return
	}
	if v := ctx.Request.Header.Peek("MCP-Protocol-Version"); len(v) > 0 && !versionSupported(v) {
		s.unsupportedVersion(ctx, id, v)
		return
	}
	if s.store.Len() >= s.cfg.MaxSessions {
		s.rejectFull(ctx, id)
		return
	}
	s.metrics.requests.Add(1)
	up, answer, err := s.cfg.Upstream.Connect(context.Background(), body)
	if err != nil {
		s.metrics.upstreamErrors.Add(1)
		var se *upstream.StatusError
		if errors.As(err, &se) && se.Body != nil && se.Status >= 400 && se.Status < 500 {
			ctx.SetStatusCode(se.Status)
			ctx.SetContentType("application/json")
			ctx.Response.SetBodyRaw(se.Body)
			s.metrics.status(se.Status)
			return
		}
		s.log.Warn("upstream initialize failed", "err", err)
		code := fasthttp.StatusBadGateway
		if errors.Is(err, upstream.ErrTimeout) {
			code = fasthttp.StatusGatewayTimeout
		}
		s.fail(ctx, code, id, jsonrpc.CodeInternalError, "Bad Gateway: upstream initialize failed", nil)
		return
	}
	if up == nil { // the upstream answered with a JSON-RPC error: relay it
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(answer)
		s.metrics.status(fasthttp.StatusOK)
		return
	}
	if !versionSupported([]byte(up.Version())) {
		_ = up.Close(context.Background())
		s.fail(ctx, fasthttp.StatusBadGateway, id, jsonrpc.CodeInternalError,
			fmt.Sprintf("Bad Gateway: upstream negotiated unsupported protocol version %q", up.Version()), nil)
		return
	}
	now := s.clock.Now()
	sessCtx, cancel := context.WithCancel(s.ctx)
	sid := newSessionID()
	sess := &session{
		id:          sid,
		version:     up.Version(),
		up:          up,
		created:     now,
		ctx:         sessCtx,
		cancel:      cancel,
		streams:     make(map[uint64]*stream, 2),
		withStreams: s.streamSet(sid),
	}
	sess.lastActive.Store(now)
	if err := s.store.Create(sess.id, sess); err != nil {
		cancel()
		_ = up.Close(context.Background())
		if errors.Is(err, shard.ErrFull) {
			s.rejectFull(ctx, id)
			return
		}
		s.fail(ctx, fasthttp.StatusInternalServerError, id, jsonrpc.CodeInternalError, "Internal error: "+err.Error(), nil)
		return
	}
	s.metrics.sessionsCreated.Add(1)
	s.cfg.Hooks.SessionCreated(sess.info())
	ctx.Response.Header.Set("Mcp-Session-Id", sess.id)
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.Response.SetBodyRaw(answer)
	s.metrics.status(fasthttp.StatusOK)
}

func (s *Server) rejectFull(ctx *fasthttp.RequestCtx, id []byte) {
	s.metrics.sessionsRejected.Add(1)
	ctx.Response.Header.Set("Retry-After", "5")
	s.fail(ctx, fasthttp.StatusServiceUnavailable, id, jsonrpc.CodeServerError, "Service Unavailable: session limit reached", nil)
	ctx.Response.Header.Set("Retry-After", "5")
}

// openPostStream answers a request with an SSE stream fed by the
// upstream's answer stream through a new ring.
func (s *Server) openPostStream(ctx *fasthttp.RequestCtx, sess *session, up upstream.Stream, ids [][]byte, id []byte) {
	st, status := s.newStream(sess, false)
	if st == nil {
		_ = up.Close()
		sess.removeInflight(ids)
		s.refuseStream(ctx, status, id)
		return
	}
	st.setUpstream(up)
	sess.busy.Add(1) // a call in flight pauses the idle clock, reader or not
	if !s.goOwned(func(context.Context) { s.pumpAnswer(sess, st, up, ids) }) {
		sess.busy.Add(-1)
		_ = up.Close()
		sess.removeInflight(ids)
		s.finishStream(st)
		ctx.Response.Header.Set("Retry-After", "1")
		s.fail(ctx, fasthttp.StatusServiceUnavailable, id, jsonrpc.CodeServerError, "Service Unavailable: shutting down", nil)
		return
	}
	var prefix []byte
	if versionAtLeast(sess.version, "2025-11-25") {
		prefix = primingEvent(nil, st.id, s.cfg.RetryHint.Milliseconds())
	}
	st.attached.Store(true)
	if versionAtLeast(sess.version, "2025-11-25") {
		s.setConnDeadline(st)
	}
	s.attach(ctx, st, 0, prefix, false)
}

// setConnDeadline arms -stream-max-connection for a new connection.
func (s *Server) setConnDeadline(st *stream) {
	if d := s.cfg.StreamMaxConnection; d > 0 {
		st.connDeadline.Store(s.clock.Now() + int64(d))
	}
}

// refuseStream answers a stream request refused by newStream.
func (s *Server) refuseStream(ctx *fasthttp.RequestCtx, status int, id []byte) {
	switch status {
	case fasthttp.StatusTooManyRequests:
		ctx.Response.Header.Set("Retry-After", "1")
		s.fail(ctx, status, id, jsonrpc.CodeServerError, "Too Many Requests: stream limit per session reached", nil)
		ctx.Response.Header.Set("Retry-After", "1")
	default:
		s.fail(ctx, fasthttp.StatusNotFound, id, jsonrpc.CodeSessionNotFound, "Session not found", nil)
	}
}

// newStream adds a stream to sess: the standalone stream (id 0) or the
// next POST answer stream. It returns nil and an HTTP status when refused.
func (s *Server) newStream(sess *session, standalone bool) (*stream, int) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.closed {
		return nil, fasthttp.StatusNotFound
	}
	if standalone {
		if st := sess.streams[0]; st != nil {
			return st, 0
		}
	}
	if sess.liveStreamsLocked() >= s.cfg.MaxStreamsPerSession {
		return nil, fasthttp.StatusTooManyRequests
	}
	ring, err := ringbuf.New(ringbuf.Config{Capacity: s.cfg.RingSize, MaxBytes: s.cfg.RingBytes, Policy: s.cfg.DropPolicy})
	if err != nil { // validated in New
		panic("gateway: ring config: " + err.Error())
	}
	var id uint64
	if !standalone {
		sess.nextStream++
		id = sess.nextStream
		sess.livePost.Add(1)
	}
	st := newStream(id, sess, ring)
	st.lastWrite.Store(s.clock.Now())
	sess.addStreamLocked(id, st)
	return st, 0
}

// attach makes ctx's response an SSE stream reading st after seq. POST
// answers stream through fasthttp (SetBodyStream), so their connection
// stays reusable for the next request. GET streams are long-lived, so they
// take the connection over (hijack): fasthttp's per-connection buffers are
// released, and an idle stream holds only its reader and ring (its writer
// runs only while something is ready, see startHijacked).
func (s *Server) attach(ctx *fasthttp.RequestCtx, st *stream, after uint64, prefix []byte, hijack bool) {
	conn := ctx.Conn()
	tuneStreamConn(conn, s.cfg.StreamSendBuffer, s.deadPeerTimeout())
	st.mu.Lock()
	st.conn = conn
	st.mu.Unlock()
	st.sess.busy.Add(1)
	st.lastWrite.Store(s.clock.Now())
	s.metrics.streamsOpened.Add(1)
	s.metrics.status(fasthttp.StatusOK)
	s.cfg.Hooks.StreamOpened(st.info())
	r := newStreamReader(s, st, after, prefix)

	if hijack {
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(net.Conn) {
			// fasthttp's hijack goroutine returns at once, letting go of
			// the request context and read buffer; the stream is written
			// on the raw connection by writers the Server owns.
			s.startHijacked(conn, r)
		})
		return
	}
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	ctx.Response.ImmediateHeaderFlush = true
	ctx.SetBodyStream(r, -1)
}

// tuneStreamConn prepares a client connection for a stream, best effort
// (a connection without the options is left alone):
//   - SO_SNDBUF = sendBuf (if > 0) bounds what a client that stops reading
//     holds in the kernel, so the ring's drop policy applies instead;
//   - TCP_USER_TIMEOUT = deadPeer (if > 0, Linux) makes the kernel abort
//     the connection when written bytes stay unacknowledged that long, so a
//     peer that vanished without FIN or RST (half-open) fails the next
//     heartbeat write instead of after the kernel's ~15 minutes of
//     retransmissions.
func tuneStreamConn(conn net.Conn, sendBuf int, deadPeer time.Duration) {
	if c, ok := conn.(interface{ SetWriteBuffer(int) error }); ok && sendBuf > 0 {
		_ = c.SetWriteBuffer(sendBuf)
	}
	if deadPeer > 0 {
		setUserTimeout(conn, deadPeer)
	}
}

// deadPeerTimeout is how long a stream's written bytes may stay
// unacknowledged: two heartbeats, so a half-open client is detached within
// about two heartbeats; 0 (kernel default) without heartbeats.
func (s *Server) deadPeerTimeout() time.Duration {
	if s.cfg.Heartbeat <= 0 {
		return 0
	}
	return 2 * s.cfg.Heartbeat
}

// handleGet opens the standalone stream or resumes a stream by
// Last-Event-ID.
func (s *Server) handleGet(ctx *fasthttp.RequestCtx) {
	if _, ev := accepts(ctx.Request.Header.Peek("Accept")); !ev {
		s.fail(ctx, fasthttp.StatusNotAcceptable, nil, jsonrpc.CodeServerError, "Not Acceptable: Accept must include text/event-stream", nil)
		return
	}
	sess := s.lookup(ctx, nil)
	if sess == nil {
		return
	}
	if last := ctx.Request.Header.Peek("Last-Event-ID"); len(last) > 0 {
		s.resume(ctx, sess, last)
		return
	}
	st, status := s.newStream(sess, true)
	if st == nil {
		s.refuseStream(ctx, status, nil)
		return
	}
	if !st.attached.CompareAndSwap(false, true) {
		s.fail(ctx, fasthttp.StatusConflict, nil, jsonrpc.CodeServerError, "Conflict: a standalone stream is already open for this session", nil)
		return
	}
	s.ensureStandalonePump(sess, st)
	s.setConnDeadline(st)
	prefix := []byte(": ok\n\n")
	if versionAtLeast(sess.version, "2025-11-25") {
		prefix = sse.AppendRetry(prefix, s.cfg.RetryHint.Milliseconds())
	}
	s.attach(ctx, st, st.delivered.Load(), prefix, true)
}

// resume attaches to the stream a Last-Event-ID names and replays it.
func (s *Server) resume(ctx *fasthttp.RequestCtx, sess *session, last []byte) {
	streamID, seq, err := sse.ParseEventID(last)
	if err != nil {
		s.metrics.resumeMisses.Add(1)
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: malformed Last-Event-ID", nil)
		return
	}
	st := sess.stream(streamID)
	if st == nil {
		s.metrics.resumeMisses.Add(1)
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: Last-Event-ID names no stream of this session", nil)
		return
	}
	if !s.takeOver(st) {
		s.fail(ctx, fasthttp.StatusConflict, nil, jsonrpc.CodeServerError, "Conflict: the stream already has a connected reader", nil)
		return
	}
	// Decide the status before any SSE byte: probe the position.
	_, skipped, err := st.ring.Next(seq, func(uint64, []byte) bool { return false })
	if skipped > 0 {
		s.accountSkipped(st)
	}
	var ev *ringbuf.EvictedError
	switch {
	case errors.As(err, &ev):
		st.attached.Store(false)
		s.metrics.resumeMisses.Add(1)
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError,
			"Bad Request: cannot resume: "+strconv.FormatUint(ev.Missing, 10)+" events after Last-Event-ID are no longer buffered", nil)
		return
	case errors.Is(err, ringbuf.ErrFutureSeq):
		st.attached.Store(false)
		s.metrics.resumeMisses.Add(1)
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: Last-Event-ID is ahead of the stream", nil)
		return
	}
	s.metrics.resumeHits.Add(1)
	if streamID == 0 {
		s.ensureStandalonePump(sess, st)
	}
	var prefix []byte
	if versionAtLeast(sess.version, "2025-11-25") {
		// Every connection of a 2025-11-25 stream carries the retry hint:
		// clients take their next reconnect delay from the stream they read.
		prefix = sse.AppendRetry(nil, s.cfg.RetryHint.Milliseconds())
	}
	if streamID == 0 || versionAtLeast(sess.version, "2025-11-25") {
		s.setConnDeadline(st)
	}
	s.attach(ctx, st, seq, prefix, true)
}

// takeOver claims a stream for a resuming reader. A client that resumes by
// Last-Event-ID has, almost always, lost the connection the gateway still
// thinks is live (a cut is seen only on the next failed write), so the old
// reader is cut and the resume waits briefly for it to let go; only if it
// does not is the resume refused with 409.
func (s *Server) takeOver(st *stream) bool {
	if st.attached.CompareAndSwap(false, true) {
		return true
	}
	st.replaced.Store(true)
	st.disconnect()
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
		if st.attached.CompareAndSwap(false, true) {
			return true
		}
	}
	return false
}

// handleDelete ends a session.
func (s *Server) handleDelete(ctx *fasthttp.RequestCtx) {
	sess := s.lookup(ctx, nil)
	if sess == nil {
		return
	}
	s.endSession(context.Background(), sess, CloseClientDelete, true)
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	s.metrics.status(fasthttp.StatusNoContent)
}
