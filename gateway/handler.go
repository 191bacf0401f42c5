package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
	"unicode/utf8"

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
	defer s.finishRequest(ctx)
	if !s.admit(ctx) { // framing, duplicate headers, Host and Origin: requestcheck.go
		return
	}
	if string(ctx.Path()) != s.cfg.Path {
		switch {
		case s.isLegacyPath(ctx.Path()): // the legacy HTTP+SSE transport (legacysse.go)
			if s.refuseWhileShutting(ctx) {
				return
			}
			if who, ok := s.authenticate(ctx); ok {
				s.handleLegacy(ctx, who)
			}
		case s.serveMetadata(ctx): // RFC 9728 metadata, with authentication on: authn.go
		default:
			// Metrics, health and profiles live on the admin listener
			// (AdminHandler), never on the public one.
			s.fail(ctx, fasthttp.StatusNotFound, nil, jsonrpc.CodeServerError, "Not Found: the MCP endpoint is "+s.cfg.Path, nil)
		}
		return
	}
	if s.refuseWhileShutting(ctx) {
		return
	}
	who, ok := s.authenticate(ctx) // bearer token, scopes, rate limit: authn.go
	if !ok {
		return
	}
	switch string(ctx.Method()) {
	case fasthttp.MethodPost:
		s.handlePost(ctx, who)
	case fasthttp.MethodGet:
		s.handleGet(ctx, who)
	case fasthttp.MethodDelete:
		s.handleDelete(ctx, who)
	default:
		ctx.Response.Header.Set("Allow", "GET, POST, DELETE")
		s.fail(ctx, fasthttp.StatusMethodNotAllowed, nil, jsonrpc.CodeServerError, "Method Not Allowed", nil)
	}
}

// refuseWhileShutting answers 503 with Retry-After and Connection: close
// once shutdown has begun; it reports whether it did.
func (s *Server) refuseWhileShutting(ctx *fasthttp.RequestCtx) bool {
	if !s.shutting.Load() {
		return false
	}
	ctx.Response.Header.Set("Retry-After", "1")
	// The connection ends with this answer: said here, not left to
	// whether fasthttp's own shutdown has begun yet.
	ctx.SetConnectionClose()
	s.fail(ctx, fasthttp.StatusServiceUnavailable, nil, jsonrpc.CodeServerError, "Service Unavailable: shutting down", nil)
	return true
}

// lookup finds the session named by the Mcp-Session-Id header and checks
// the MCP-Protocol-Version header. It answers the error itself and returns
// nil when the request must stop. id is the request id for error bodies.
// A session of another principal than who is answered as unknown.
func (s *Server) lookup(ctx *fasthttp.RequestCtx, id []byte, who caller) *session {
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
	if !ok && s.clu != nil {
		// Not local: one registry read (cluster.go).
		loaded, err := s.clusterLoad(string(sid))
		if err != nil {
			s.clusterUnavailable(ctx, err)
			return nil
		}
		sess, ok = loaded, loaded != nil
	}
	if ok && (sess.legacy != nil || !s.ownsSession(sess, who)) {
		// A legacy HTTP+SSE session is reached only through its own
		// endpoints; another principal's session does not exist for who.
		ok = false
	}
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

// clientMaxDepth is the deepest nesting of a client's body (the message
// object is at depth 1): the official Go SDK's limit (go-sdk
// internal/json, 1000). Such an upstream decodes nothing deeper, and its
// stdio transport ends the connection, calls in flight and all, on a
// message it cannot decode; over the session pool (stateless clients, a
// session-era stdio upstream) that connection serves every client of the
// principal. No MCP message nests anywhere near it.
const clientMaxDepth = 1000

// parseBody parses a POSTed body (of /mcp or of the legacy message
// endpoint) as JSON-RPC. A body that is empty, not UTF-8 (RFC 8259
// section 8.1: JSON exchanged between systems is UTF-8), nested deeper than
// clientMaxDepth or not JSON-RPC is answered with 400 here, and ok is
// false. Otherwise msgs point into p, which the caller puts back into
// s.parsers once it is done with them.
func (s *Server) parseBody(ctx *fasthttp.RequestCtx, body []byte) (p *jsonrpc.Parser, msgs []jsonrpc.Message, batch, ok bool) {
	if len(bytes.TrimSpace(body)) == 0 {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: empty body", nil)
		return nil, nil, false, false
	}
	if !utf8.Valid(body) {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeParseError, "Parse error: the body is not valid UTF-8", nil)
		return nil, nil, false, false
	}
	p = s.parsers.Get().(*jsonrpc.Parser)
	msgs, batch, perr := p.ParseLimited(body, clientMaxDepth)
	if perr != nil {
		s.fail(ctx, fasthttp.StatusBadRequest, perr.ID, perr.Code, perr.Message, nil)
		s.parsers.Put(p)
		return nil, nil, false, false
	}
	return p, msgs, batch, true
}

// handlePost forwards a client message upstream and relays the answer.
func (s *Server) handlePost(ctx *fasthttp.RequestCtx, who caller) {
	start := s.metrics.now()
	if !mediaIs(mediaType(ctx.Request.Header.ContentType()), "application/json") {
		s.fail(ctx, fasthttp.StatusUnsupportedMediaType, nil, jsonrpc.CodeServerError, "Unsupported Media Type: Content-Type must be application/json", nil)
		return
	}
	if json, ev := acceptsAll(&ctx.Request.Header); !json || !ev {
		s.fail(ctx, fasthttp.StatusNotAcceptable, nil, jsonrpc.CodeServerError, "Not Acceptable: Accept must include application/json and text/event-stream", nil)
		return
	}
	body := ctx.PostBody()
	p, msgs, batch, ok := s.parseBody(ctx, body)
	if !ok {
		return
	}
	defer s.parsers.Put(p)
	class := classOf(msgs[0].Method, msgs[0].Kind == jsonrpc.KindRequest)
	defer s.metrics.observe(&s.metrics.latency[class], start)
	if isStatelessRequest(ctx, &msgs[0]) {
		s.handleStateless(ctx, body, msgs, batch, class, who) // Last-Event-ID ignored (rule 31)
		return
	}
	if len(ctx.Request.Header.Peek("Last-Event-ID")) > 0 {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: Last-Event-ID is only valid on GET", nil)
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
			s.handleInitialize(ctx, body, &msgs[0], who)
			return
		}
	}
	sess := s.lookup(ctx, firstID, who)
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
	calls, reply, ok := s.forwardCalls(ctx, sess, body, msgs, batch, firstID, class)
	if !ok {
		return
	}
	switch {
	case reply.Stream != nil && len(calls) == 0:
		// An SSE answer to notifications only: nothing is owed.
		_ = reply.Stream.Close()
		ctx.SetStatusCode(fasthttp.StatusAccepted)
		s.metrics.status(fasthttp.StatusAccepted)
	case reply.Stream != nil:
		up := reply.Stream
		var done bool
		if done, up = s.answerEarly(ctx, sess, up, calls, batch); !done { // earlyanswer.go
			s.openPostStream(ctx, sess, up, calls, firstID)
		}
	case reply.JSON != nil && len(calls) > 0:
		sess.endCalls(calls)
		answer, ok := clientAnswer(make([]byte, 0, len(reply.JSON)+16), p, reply.JSON, calls)
		if !ok {
			s.metrics.upstreamErrors[upErrProtocol].Add(1)
			s.log.Warn("upstream answered with no response to the request", "session", shortID(sess.id))
			s.fail(ctx, fasthttp.StatusBadGateway, firstID, jsonrpc.CodeInternalError, "Bad Gateway: upstream answered no request of the message", nil)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(answer)
		s.metrics.status(fasthttp.StatusOK)
	default:
		// Accepted, or JSON to notifications or responses only (some
		// servers answer them 200 with an empty body): 202, unless a
		// request is owed its answer.
		sess.endCalls(calls)
		if len(calls) > 0 {
			s.metrics.upstreamErrors[upErrProtocol].Add(1)
			s.fail(ctx, fasthttp.StatusBadGateway, firstID, jsonrpc.CodeInternalError, "Bad Gateway: upstream accepted a request without answering it", nil)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusAccepted)
		s.metrics.status(fasthttp.StatusAccepted)
	}
}

// hasCancel reports whether msgs hold a notifications/cancelled.
func hasCancel(msgs []jsonrpc.Message) bool {
	for i := range msgs {
		if msgs[i].Kind == jsonrpc.KindNotification && string(msgs[i].Method) == "notifications/cancelled" {
			return true
		}
	}
	return false
}

// upstreamFailed maps an upstream error to the client's answer. calls are
// the POST's calls, whose ids an upstream error body names.
func (s *Server) upstreamFailed(ctx *fasthttp.RequestCtx, sess *session, calls []*call, id []byte, err error) {
	var se *upstream.StatusError
	switch {
	case errors.Is(err, upstream.ErrSessionGone):
		s.metrics.upstreamFailure(err)
		s.endSession(context.Background(), sess, CloseUpstreamGone, upstreamGone)
		s.fail(ctx, fasthttp.StatusNotFound, nil, jsonrpc.CodeSessionNotFound, "Session not found: the upstream server ended it", nil)
	case errors.Is(err, upstream.ErrAtCapacity):
		// A restored session's upstream session could not be opened again
		// (reinit.go) because the upstream is at its cap (-max-processes).
		// That is the gateway's limit, not an upstream failure: like an
		// initialize at the cap, 503 with Retry-After. The session stays,
		// and its next use tries again.
		ctx.Response.Header.Set("Retry-After", "5")
		s.fail(ctx, fasthttp.StatusServiceUnavailable, id, jsonrpc.CodeServerError, "Service Unavailable: the upstream is at capacity, retry later", nil)
	case errors.As(err, &se) && se.Status >= 400 && se.Status < 500 && se.Status != fasthttp.StatusNotFound && se.Status != fasthttp.StatusUnauthorized:
		// The upstream refused the client's message: relay the refusal.
		// (A 401 refuses the gateway's credentials, not the client's: the
		// client could do nothing about it, so it is an upstream error.)
		s.relayRefusal(ctx, se, calls, id)
	case errors.Is(err, upstream.ErrTimeout):
		s.metrics.upstreamFailure(err)
		s.log.Warn("upstream timeout", "session", shortID(sess.id), "err", err)
		s.fail(ctx, fasthttp.StatusGatewayTimeout, id, jsonrpc.CodeInternalError, "Gateway Timeout: upstream did not answer in time", nil)
	default:
		s.metrics.upstreamFailure(err)
		s.log.Warn("upstream error", "session", shortID(sess.id), "err", err)
		s.fail(ctx, fasthttp.StatusBadGateway, id, jsonrpc.CodeInternalError, "Bad Gateway: upstream error", nil)
	}
}

// relayRefusal answers with the upstream's 4xx: the client's message was
// refused, which is not an upstream failure. A JSON-RPC error body is
// relayed under the client's ids; any other body becomes a JSON-RPC error
// naming the upstream's status.
func (s *Server) relayRefusal(ctx *fasthttp.RequestCtx, se *upstream.StatusError, calls []*call, id []byte) {
	if se.RetryAfter != "" { // a 429 or 503's advice is the client's to follow
		ctx.Response.Header.Set("Retry-After", se.RetryAfter)
	}
	if se.Body != nil {
		var p jsonrpc.Parser
		if body, ok := clientAnswer(nil, &p, se.Body, calls); ok {
			ctx.SetStatusCode(se.Status)
			ctx.SetContentType("application/json")
			ctx.Response.SetBodyRaw(body)
			s.metrics.status(se.Status)
			return
		}
	}
	code := jsonrpc.CodeInvalidRequest
	if se.Status == fasthttp.StatusRequestEntityTooLarge {
		code = jsonrpc.CodeServerError
	}
	s.fail(ctx, se.Status, id, code, "upstream refused the message: HTTP "+strconv.Itoa(se.Status)+" "+fasthttp.StatusMessage(se.Status), nil)
}

// handleInitialize opens an upstream session and issues a gateway session.
// The request goes upstream under the gateway's own id, and the answer
// comes back under the client's.
func (s *Server) handleInitialize(ctx *fasthttp.RequestCtx, body []byte, m *jsonrpc.Message, who caller) {
	id := m.ID
	if len(ctx.Request.Header.Peek("Mcp-Session-Id")) > 0 {
		s.fail(ctx, fasthttp.StatusBadRequest, id, jsonrpc.CodeInvalidRequest, "Invalid Request: initialize must not carry Mcp-Session-Id", nil)
		return
	}
	if v := ctx.Request.Header.Peek("MCP-Protocol-Version"); len(v) > 0 && !versionSupported(v) {
		s.unsupportedVersion(ctx, id, v)
		return
	}
	if m.Kind != jsonrpc.KindRequest {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeInvalidRequest, "Invalid Request: initialize must be a request (with an id)", nil)
		return
	}
	if !s.roomForSession(ctx, who, id) {
		return
	}
	up, answer, fwd, ok := s.connectUpstream(ctx, body, m)
	if !ok {
		return
	}
	if up == nil { // the upstream answered with a JSON-RPC error: relay it
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(answer)
		s.metrics.status(fasthttp.StatusOK)
		return
	}
	version, answer := negotiateClientHop(body, answer, up.Version(), supportedVersions)
	now := s.clock.Now()
	sid := newSessionID()
	sess := &session{
		id:          sid,
		principal:   who.principal,
		owner:       who.owner(),
		version:     version,
		up:          up,
		created:     now,
		withStreams: s.streamSet(sid),
	}
	sess.lastActive.Store(now)
	s.keepForRestart(sess, fwd, answer) // Config.StateFile or Cluster only (state.go)
	if s.clu != nil {
		// Registered before it is answered: the client's next request
		// may reach another node (cluster.go).
		if err := s.clusterCreated(sess); err != nil {
			sess.cancel()
			_ = up.Close(context.Background())
			s.clusterUnavailable(ctx, err)
			return
		}
	}
	err := s.storeSession(sess)
	if errors.Is(err, shard.ErrFull) && s.cfg.EvictIdle && s.evictIdle() {
		err = s.storeSession(sess)
	}
	if err != nil {
		sess.cancel()
		_ = up.Close(context.Background())
		s.clusterForget(sess) // registered above: no node may take it for live
		if errors.Is(err, shard.ErrFull) {
			s.rejectFull(ctx, id)
			return
		}
		if errors.Is(err, shard.ErrOwnerFull) {
			s.rejectPrincipalFull(ctx, id)
			return
		}
		s.fail(ctx, fasthttp.StatusInternalServerError, id, jsonrpc.CodeInternalError, "Internal error: "+err.Error(), nil)
		return
	}
	s.metrics.sessionsCreated.Add(1)
	s.logSessionCreated(sess, up)
	s.cfg.Hooks.SessionCreated(sess.info())
	ctx.Response.Header.Set("Mcp-Session-Id", sess.id)
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.Response.SetBodyRaw(answer)
	s.metrics.status(fasthttp.StatusOK)
}

// connectUpstream forwards a client's initialize (m, the message of body)
// upstream under the gateway's id. It returns the upstream session, nil
// when the upstream answered with a JSON-RPC error, and the upstream's
// answer under the client's id, and the initialize as sent upstream
// (fwd, which a restart re-sends: state.go). On a failure it answers the request itself
// and ok is false.
func (s *Server) connectUpstream(ctx *fasthttp.RequestCtx, body []byte, m *jsonrpc.Message) (up upstream.Session, answer, fwd []byte, ok bool) {
	id := m.ID
	fwd = jsonrpc.AppendReplaced(make([]byte, 0, len(body)+4), body, m.ID, []byte(strconv.Itoa(initializeUpID)))
	init := []*call{{clientID: m.ID, upID: initializeUpID}}
	var p jsonrpc.Parser
	s.metrics.requests.Add(1)
	upStart := s.metrics.now()
	upCtx := s.upstreamCtx(ctx)
	sessions, _, _ := s.Upstreams(upCtx) // a detection carries the client's forwarded credential
	up, answer, err := sessions.Connect(upCtx, fwd)
	s.metrics.observe(&s.metrics.upstreamLatency[classInitialize], upStart)
	if err == nil {
		s.upstreamSucceeded()
	}
	if errors.Is(err, upstream.ErrAtCapacity) { // e.g. -max-processes: 503 + Retry-After, like -max-sessions
		s.rejectFull(ctx, id)
		return nil, nil, nil, false
	}
	if err != nil {
		// A 4xx refuses the client's initialize and is relayed, but a 401
		// (the gateway's credentials) and a 404 (no MCP endpoint at the
		// -upstream URL; relayed, it would read as an unknown session) are
		// upstream trouble.
		var se *upstream.StatusError
		if errors.As(err, &se) && se.Status >= 400 && se.Status < 500 &&
			se.Status != fasthttp.StatusUnauthorized && se.Status != fasthttp.StatusNotFound {
			s.relayRefusal(ctx, se, init, id)
			return nil, nil, nil, false
		}
		s.metrics.upstreamFailure(err)
		s.log.Warn("upstream initialize failed", "err", err)
		code := fasthttp.StatusBadGateway
		if errors.Is(err, upstream.ErrTimeout) {
			code = fasthttp.StatusGatewayTimeout
		}
		msg := "Bad Gateway: upstream initialize failed"
		if code == fasthttp.StatusGatewayTimeout {
			msg = "Gateway Timeout: upstream did not answer initialize in time"
		}
		s.fail(ctx, code, id, jsonrpc.CodeInternalError, msg, nil)
		return nil, nil, nil, false
	}
	if out, ok := clientAnswer(nil, &p, answer, init); ok {
		answer = out
	}
	if up != nil && !versionIn(up.Version(), upstreamVersions) {
		_ = up.Close(context.Background())
		s.fail(ctx, fasthttp.StatusBadGateway, id, jsonrpc.CodeInternalError,
			fmt.Sprintf("Bad Gateway: upstream negotiated unsupported protocol version %q", up.Version()), nil)
		return nil, nil, nil, false
	}
	return up, answer, fwd, true
}

// roomForSession reports whether who may open a session now; if not, it
// answered the request (503 while draining or at the session cap, unless
// an idle session is evicted to make room; 429 at who's own cap).
func (s *Server) roomForSession(ctx *fasthttp.RequestCtx, who caller, id []byte) bool {
	if s.draining.Load() {
		ctx.Response.Header.Set("Retry-After", "1")
		s.fail(ctx, fasthttp.StatusServiceUnavailable, id, jsonrpc.CodeServerError, "Service Unavailable: the gateway is draining", nil)
		return false
	}
	// The caller's own cap first: a refused initialize must not have
	// evicted another session to make room.
	if s.principalFull(ctx, who, id) {
		return false
	}
	if s.store.Len() >= s.cfg.MaxSessions && !(s.cfg.EvictIdle && s.evictIdle()) {
		s.rejectFull(ctx, id)
		return false
	}
	return true
}

func (s *Server) rejectFull(ctx *fasthttp.RequestCtx, id []byte) {
	s.metrics.sessionsRejected.Add(1)
	ctx.Response.Header.Set("Retry-After", "5")
	s.fail(ctx, fasthttp.StatusServiceUnavailable, id, jsonrpc.CodeServerError, "Service Unavailable: session limit reached", nil)
}

// openPostStream answers a request with an SSE stream fed by the
// upstream's answer stream through a new ring.
func (s *Server) openPostStream(ctx *fasthttp.RequestCtx, sess *session, up upstream.Stream, calls []*call, id []byte) {
	st, status := s.newStream(sess, false, true)
	if st == nil {
		s.releaseAnswer(sess)
		_ = up.Close()
		sess.endCalls(calls)
		s.refuseStream(ctx, status, id)
		return
	}
	st.setUpstream(up)
	if sess.relayedBy(st, nil, calls) {
		_ = up.Close() // cancelled or the session closed meanwhile: the pump ends the stream
	}
	if sess.cluster != nil {
		s.newClusterStream(st, calls, up)
	}
	sess.busy.Add(1) // a call in flight pauses the idle clock, reader or not
	done, pending, waited := s.relayBuffered(sess, st, up, calls)
	if done {
		// Relayed whole from what came with the headers (pump.go): the
		// ring is closed, answerWhole sends it at once.
	} else if rest := pending; !s.goOwned(func(context.Context) { s.pumpAnswer(sess, st, up, calls, rest) }) {
		// (rest: a copy only the pump's closure holds, so pending itself
		// stays on this stack when the answer was relayed here.)
		sess.busy.Add(-1)
		_ = up.Close()
		sess.endCalls(calls)
		s.finishStream(st)
		ctx.Response.Header.Set("Retry-After", "1")
		s.fail(ctx, fasthttp.StatusServiceUnavailable, id, jsonrpc.CodeServerError, "Service Unavailable: shutting down", nil)
		return
	}
	var prefix []byte
	var priming [primingCap]byte // on the stack: answerWhole copies it
	resumable := versionAtLeast(sess.version, "2025-11-25") && !sess.ephemeral
	if resumable {
		prefix = primingEvent(priming[:0], st.id, s.cfg.RetryHint.Milliseconds())
	}
	if s.answerWhole(ctx, st, prefix, sess.ephemeral, waited) {
		return // finished at once: one body, one write (wholeanswer.go)
	}
	if !ctx.Request.Header.IsHTTP11() {
		// fasthttp frames a body of unknown length in chunks, which an
		// HTTP/1.0 client cannot read: the hijacked connection's writer
		// sends it as it is, ended by the connection's close.
		s.attachHijacked(ctx, st, 0, bytes.Clone(prefix), resumable, sess.ephemeral)
		return
	}
	w := newBodyWriter(s, st, ctx.Conn(), bytes.Clone(prefix))
	w.plain = sess.ephemeral // the stateless revision: no event ids
	if resumable {
		s.setConnDeadline(&w.clientConn)
	}
	s.attachConn(&w.clientConn)
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	ctx.Response.ImmediateHeaderFlush = true
	ctx.SetBodyStream(w, -1)
}

// setConnDeadline arms -stream-max-connection for a new connection.
func (s *Server) setConnDeadline(c *clientConn) {
	if d := s.cfg.StreamMaxConnection; d > 0 {
		c.deadline.Store(s.clock.Now() + int64(d))
	}
}

// refuseStream answers a stream request refused by newStream.
func (s *Server) refuseStream(ctx *fasthttp.RequestCtx, status int, id []byte) {
	switch status {
	case fasthttp.StatusTooManyRequests:
		ctx.Response.Header.Set("Retry-After", "1")
		s.fail(ctx, status, id, jsonrpc.CodeServerError, "Too Many Requests: stream limit per session reached", nil)
	default:
		s.fail(ctx, fasthttp.StatusNotFound, id, jsonrpc.CodeSessionNotFound, "Session not found", nil)
	}
}

// newStream adds a stream to sess: the standalone stream (id 0) or the
// next POST answer stream. It returns nil and an HTTP status when refused.
// reserved says an answer stream's place was taken by reserveAnswer: it is
// not counted against the cap again.
func (s *Server) newStream(sess *session, standalone, reserved bool) (*stream, int) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.closed {
		return nil, fasthttp.StatusNotFound
	}
	if standalone {
		if st := sess.streams.get(0); st != nil {
			return st, 0
		}
	}
	if !reserved && sess.liveStreamsLocked() >= s.cfg.MaxStreamsPerSession {
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
		if !reserved {
			sess.livePost.Add(1)
		}
	}
	st := newStream(id, sess, ring)
	sess.addStreamLocked(st)
	return st, 0
}

// reserveAnswer takes a place for a POST answer stream before a request
// goes upstream, so a client at the stream cap gets 429 before the
// upstream starts work it would then have to throw away. The place is
// used by newStream(reserved) or given back by releaseAnswer.
func (s *Server) reserveAnswer(sess *session) bool {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.liveStreamsLocked() >= s.cfg.MaxStreamsPerSession {
		return false
	}
	sess.livePost.Add(1)
	return true
}

func (s *Server) releaseAnswer(sess *session) { sess.livePost.Add(-1) }

// attachConn makes c the connection of its stream. The newest connection
// wins: one it replaces (a reconnecting client's old connection, which may
// have died unnoticed: a cut is seen only at the next write) is ended at
// once, so a reconnecting client always gets its stream back.
func (s *Server) attachConn(c *clientConn) {
	tuneStreamConn(c.nc, s.cfg.StreamSendBuffer, s.deadPeerTimeout())
	setStreaming(c.nc, true)
	now := s.clock.Now()
	c.lastWrite.Store(now)
	c.st.sess.busy.Add(1)
	if old := c.st.attach(c); old != nil {
		s.metrics.replacements.Add(1)
		old.end(CloseReplaced)
	}
	s.metrics.streamsOpened.Add(1)
	s.metrics.status(fasthttp.StatusOK)
	s.cfg.Hooks.StreamOpened(c.st.info())
}

// attachHijacked attaches a GET stream's connection (or an HTTP/1.0 POST
// answer's, see openPostStream) and takes it over from
// fasthttp: its buffers are released, and the stream is written by the
// hijackWriter (an idle stream holds no goroutine). Until fasthttp hands
// the connection over, the stall clock runs, so a hijack that never
// completes is cut by the sweeper instead of staying attached.
func (s *Server) attachHijacked(ctx *fasthttp.RequestCtx, st *stream, after uint64, prefix []byte, deadline, plain bool) {
	w := newHijackWriter(s, st, ctx.Conn(), after, prefix)
	w.http10 = !ctx.Request.Header.IsHTTP11()
	w.plain = plain
	w.writeSince.Store(s.clock.Now())
	if deadline {
		s.setConnDeadline(&w.clientConn)
	}
	s.attachConn(&w.clientConn)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(net.Conn) { w.start() })
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
// Last-Event-ID. Either way the new connection takes the stream over from
// an older one (see attachConn): never a 409.
func (s *Server) handleGet(ctx *fasthttp.RequestCtx, who caller) {
	if _, ev := acceptsAll(&ctx.Request.Header); !ev {
		s.fail(ctx, fasthttp.StatusNotAcceptable, nil, jsonrpc.CodeServerError, "Not Acceptable: Accept must include text/event-stream", nil)
		return
	}
	sess := s.lookup(ctx, nil, who)
	if sess == nil {
		return
	}
	if s.draining.Load() && s.cfg.StateFile == "" && s.clu == nil {
		// A stream connection would only be ended again: come back later
		// (to another node). With a state file (or in a cluster) the
		// stream is served: the session outlives the restart (lives on
		// other nodes), and an SDK client whose stream reconnect fails
		// gives the session up.
		ctx.Response.Header.Set("Retry-After", "1")
		s.fail(ctx, fasthttp.StatusServiceUnavailable, nil, jsonrpc.CodeServerError, "Service Unavailable: the gateway is draining", nil)
		return
	}
	last := ctx.Request.Header.Peek("Last-Event-ID")
	if sess.cluster != nil && s.clusterGet(ctx, sess, last) {
		return // served from another node's stream (cluster.go)
	}
	if len(last) > 0 {
		s.resume(ctx, sess, last)
		return
	}
	st, status := s.newStream(sess, true, false)
	if st == nil {
		s.refuseStream(ctx, status, nil)
		return
	}
	s.ensureStandalonePump(sess, st)
	prefix := []byte(": ok\n\n")
	if versionAtLeast(sess.version, "2025-11-25") {
		prefix = sse.AppendRetry(prefix, s.cfg.RetryHint.Milliseconds())
	}
	s.attachHijacked(ctx, st, st.plainStart(), prefix, true, false)
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
	// Decide the status before any SSE byte: probe the position.
	_, skipped, err := st.ring.Next(seq, func(uint64, []byte) bool { return false })
	if skipped > 0 {
		s.accountSkipped(st)
	}
	var ev *ringbuf.EvictedError
	switch {
	case errors.As(err, &ev):
		s.metrics.resumeMisses.Add(1)
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError,
			"Bad Request: cannot resume: "+strconv.FormatUint(ev.Missing, 10)+" events after Last-Event-ID are no longer buffered", nil)
		return
	case errors.Is(err, ringbuf.ErrFutureSeq):
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
		if streamID != 0 || sess.cluster != nil {
			// A connection cut before its first event still leaves the
			// client an id to resume from (a call's stream: the Go SDK
			// gives the call up after a connection without one).
			prefix = resumePriming(prefix, streamID, seq) // cluster.go
		}
	}
	s.attachHijacked(ctx, st, seq, prefix, streamID == 0 || versionAtLeast(sess.version, "2025-11-25"), false)
}

// handleDelete ends a session.
func (s *Server) handleDelete(ctx *fasthttp.RequestCtx, who caller) {
	sess := s.lookup(ctx, nil, who)
	if sess == nil {
		return
	}
	s.endSession(context.Background(), sess, CloseClientDelete, upstreamNow)
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	s.metrics.status(fasthttp.StatusNoContent)
}

// forwardCalls sends a client POST's messages (a session's, on /mcp or a
// legacy /messages endpoint) upstream: the calls begin (their ids
// rewritten, upstreamBody), an answer stream is reserved against the
// stream cap, and the upstream's latency and success are recorded. ok is
// false when it answered the request itself: a duplicate id (400), only
// cancellations of calls not in flight (202), the stream cap (429), an
// upstream failure.
func (s *Server) forwardCalls(ctx *fasthttp.RequestCtx, sess *session, body []byte, msgs []jsonrpc.Message, batch bool, firstID []byte, class methodClass) (calls []*call, reply *upstream.Reply, ok bool) {
	calls, ok = sess.beginCalls(msgs)
	if !ok {
		s.fail(ctx, fasthttp.StatusBadRequest, firstID, jsonrpc.CodeInvalidRequest, "Invalid Request: request id already in flight in this session", nil)
		return nil, nil, false
	}
	fwd := body
	if len(calls) > 0 || hasCancel(msgs) {
		if fwd = upstreamBody(make([]byte, 0, len(body)+16), sess, body, msgs, calls, batch); fwd == nil {
			// Only cancellations of calls that are not in flight: nothing
			// to forward (PROTOCOL.md section 2, rule 37).
			s.accepted(ctx)
			return nil, nil, false
		}
	}
	// Calls answered by a stream count against the stream cap: each holds
	// a pump until its answer.
	if len(calls) > 0 && !s.reserveAnswer(sess) {
		sess.endCalls(calls)
		s.refuseStream(ctx, fasthttp.StatusTooManyRequests, firstID)
		return nil, nil, false
	}
	s.metrics.requests.Add(1)
	sess.busy.Add(1)
	upStart := s.metrics.now()
	reply, err := sess.up.Send(s.upstreamCtx(ctx), fwd)
	s.metrics.observe(&s.metrics.upstreamLatency[class], upStart)
	sess.busy.Add(-1)
	if err == nil {
		s.upstreamSucceeded()
		if sess.restart != nil {
			sess.noteReplayable(msgs) // log level, subscriptions (reinit.go)
		}
		if hasCancel(msgs) {
			sess.cancelForwarded(msgs) // calls.go
		}
	}
	if len(calls) > 0 && (err != nil || reply.Stream == nil) {
		s.releaseAnswer(sess)
	}
	if err != nil {
		s.upstreamFailed(ctx, sess, calls, firstID, err)
		sess.endCalls(calls)
		return nil, nil, false
	}
	return calls, reply, true
}
