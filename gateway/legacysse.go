package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/rawsock"
	"github.com/mcpgate/mcpgate/gateway/sse"
	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
	"github.com/mcpgate/mcpgate/shard"
)

// Legacy HTTP+SSE clients (the transport of protocol 2024-11-05, PROTOCOL.md
// rules 47-49), on the gateway's listener beside the Streamable HTTP
// endpoint:
//
//   - GET Config.LegacySSEPath opens a session: 200 SSE whose first event is
//     `endpoint`, data Config.LegacyMessagePath?sessionId=<id>, and then
//     one `event: message` per message for the client, without event ids
//     (the transport has no resumption).
//   - POST <message path>?sessionId=<id> takes one client message and
//     answers 202; what the upstream answers, and everything else it sends,
//     arrives on the session's stream (so do the gateway's own answers: a
//     ping, a request before initialize). Transport-level refusals (no or
//     an unknown session, not JSON) are HTTP errors.
//   - The stream's end ends the session (there is no DELETE and no resume),
//     whatever ended it: the client, a stalled write, a slow consumer cut by
//     the drop policy, expiry, shutdown.
//
// A legacy session is an ordinary session of the shard store from the GET
// on, so it counts against the session cap and expires like the others; its
// one stream is its stream 0, a ring with the configured size, byte budget
// and drop policy, written by a hijackWriter like a standalone GET stream.
// The upstream session is opened when the client POSTs initialize (any
// upstream kind: session.up is a lazyUpstream until then); from then on the
// upstream's standalone stream feeds stream 0, and each request the client
// POSTs goes upstream under the gateway's id, its answer (a JSON reply, or
// every message of an answer stream, pumped by pumpLegacyAnswer) pushed
// into stream 0 under the client's id. Several producers thus share one
// ring: pushMust lets them take turns (legacyState.pushMu), since a ring
// wakes one waiting producer at a time.
//
// Versions: the session's protocol version is the one its initialize
// settles on the client's hop (versions.go, legacyVersions); the client
// sends no version header.
//
// On a cluster the session stays on the node that took the GET (its
// stream is a connection to it); a POST that reaches another node is
// forwarded to that node and answered as it answers (cluster_legacy.go).

// Defaults of the legacy HTTP+SSE endpoints.
const (
	DefaultLegacySSEPath     = "/sse"
	DefaultLegacyMessagePath = "/messages"
)

// legacyState is what a legacy HTTP+SSE session has beyond a session.
type legacyState struct {
	// up is session.up: the upstream session once initialize succeeded.
	up lazyUpstream
	// version is the client hop's protocol version, set by initialize.
	version atomic.Pointer[string]
	// phase is legacyWaiting until an initialize begins, legacyConnecting
	// while it runs, legacyReady after it succeeded.
	phase atomic.Int32
	// pushMu serializes the must-deliver producers of stream 0 (pushMust).
	pushMu sync.Mutex
}

const (
	legacyWaiting int32 = iota
	legacyConnecting
	legacyReady
)

// errNotInitialized is what a legacy session's upstream side answers
// before initialize opened it.
var errNotInitialized = errors.New("gateway: legacy session not initialized")

// lazyUpstream is a legacy session's upstream.Session: empty until the
// client's initialize opens the real one, which it then forwards to. A
// Close before that makes set refuse, so a session that ended while its
// initialize ran leaves nothing open upstream.
type lazyUpstream struct {
	cur atomic.Pointer[upstream.Session]
	// mu orders set against Close; it guards closed.
	mu     sync.Mutex
	closed bool
}

var _ upstream.Session = (*lazyUpstream)(nil)

func (l *lazyUpstream) get() upstream.Session {
	if p := l.cur.Load(); p != nil {
		return *p
	}
	return nil
}

// set installs the real session; false if Close came first (the caller
// then closes up).
func (l *lazyUpstream) set(up upstream.Session) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.cur.Store(&up)
	return true
}

func (l *lazyUpstream) ID() string {
	if u := l.get(); u != nil {
		return u.ID()
	}
	return ""
}

// Kind is the real session's transport (upstream.KindHTTP, ...), for the
// admin API; empty before initialize opened one.
func (l *lazyUpstream) Kind() string {
	if u := l.get(); u != nil {
		return kindOf(u)
	}
	return ""
}

func (l *lazyUpstream) Version() string {
	if u := l.get(); u != nil {
		return u.Version()
	}
	return ""
}

func (l *lazyUpstream) Send(ctx context.Context, body []byte) (*upstream.Reply, error) {
	if u := l.get(); u != nil {
		return u.Send(ctx, body)
	}
	return nil, errNotInitialized
}

func (l *lazyUpstream) Listen(ctx context.Context) (upstream.Stream, error) {
	if u := l.get(); u != nil {
		return u.Listen(ctx)
	}
	return nil, upstream.ErrNotSupported
}

func (l *lazyUpstream) Close(ctx context.Context) error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	if u := l.get(); u != nil {
		return u.Close(ctx)
	}
	return nil
}

// abort is Close for reapLater with its queue full (abortUpstream): a
// later set refuses, and the real session, if any, is ended without
// waiting. It reports false only for a real session left to expire
// upstream by itself.
func (l *lazyUpstream) abort() bool {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	if u := l.get(); u != nil {
		return abortUpstream(u)
	}
	return true // none opened, and none will be
}

// protocolVersion is the protocol version of the session's client hop:
// version, or for a legacy session the one its initialize settled ("" before).
func (s *session) protocolVersion() string {
	if s.legacy == nil {
		return s.version
	}
	if v := s.legacy.version.Load(); v != nil {
		return *v
	}
	return ""
}

// legacyDefaults fills in and checks the legacy endpoints' paths.
func (c *Config) legacyDefaults() error {
	if c.LegacySSEOff {
		return nil
	}
	if c.LegacySSEPath == "" {
		c.LegacySSEPath = DefaultLegacySSEPath
	}
	if c.LegacyMessagePath == "" {
		c.LegacyMessagePath = DefaultLegacyMessagePath
	}
	for _, p := range []string{c.LegacySSEPath, c.LegacyMessagePath} {
		if err := servedPath("legacy HTTP+SSE path", p); err != nil {
			return err
		}
		if p == c.Path {
			return fmt.Errorf("gateway: legacy HTTP+SSE path %q must differ from the endpoint path", p)
		}
	}
	if c.LegacySSEPath == c.LegacyMessagePath {
		return fmt.Errorf("gateway: the legacy HTTP+SSE paths must differ (both %q)", c.LegacySSEPath)
	}
	return nil
}

// isLegacyPath reports whether p is one of the legacy endpoints' paths.
func (s *Server) isLegacyPath(p []byte) bool {
	return !s.cfg.LegacySSEOff && (string(p) == s.cfg.LegacySSEPath || string(p) == s.cfg.LegacyMessagePath)
}

// handleLegacy serves the legacy endpoints (after admit and
// authentication: who is the caller, whose session it is).
func (s *Server) handleLegacy(ctx *fasthttp.RequestCtx, who caller) {
	if string(ctx.Path()) == s.cfg.LegacySSEPath {
		if !ctx.IsGet() {
			ctx.Response.Header.Set("Allow", "GET")
			s.fail(ctx, fasthttp.StatusMethodNotAllowed, nil, jsonrpc.CodeServerError, "Method Not Allowed: open a legacy HTTP+SSE session with GET", nil)
			return
		}
		s.openLegacySession(ctx, who)
		return
	}
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		s.fail(ctx, fasthttp.StatusMethodNotAllowed, nil, jsonrpc.CodeServerError, "Method Not Allowed: POST messages here", nil)
		return
	}
	s.handleLegacyMessage(ctx, who)
}

// openLegacySession answers GET on the SSE path: a new session whose
// stream starts with the endpoint event.
func (s *Server) openLegacySession(ctx *fasthttp.RequestCtx, who caller) {
	if a := ctx.Request.Header.Peek("Accept"); len(a) > 0 {
		if _, ev := acceptsAll(&ctx.Request.Header); !ev {
			s.fail(ctx, fasthttp.StatusNotAcceptable, nil, jsonrpc.CodeServerError, "Not Acceptable: Accept must include text/event-stream", nil)
			return
		}
	}
	if !s.roomForSession(ctx, who, nil) {
		return
	}
	now := s.clock.Now()
	sid := newSessionID()
	l := &legacyState{}
	sess := &session{
		id:          sid,
		principal:   who.principal,
		owner:       who.owner(),
		up:          &l.up,
		created:     now,
		withStreams: s.streamSet(sid),
		legacy:      l,
	}
	sess.lastActive.Store(now)
	if s.clu != nil {
		// Registered before the endpoint event names it: the client's
		// POSTs may reach another node, which forwards them here
		// (cluster_legacy.go).
		if err := s.clusterCreated(sess); err != nil {
			sess.cancel()
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
		s.clusterForget(sess)
		if errors.Is(err, shard.ErrFull) {
			s.rejectFull(ctx, nil)
			return
		}
		if errors.Is(err, shard.ErrOwnerFull) {
			s.rejectPrincipalFull(ctx, nil)
			return
		}
		s.fail(ctx, fasthttp.StatusInternalServerError, nil, jsonrpc.CodeInternalError, "Internal error: "+err.Error(), nil)
		return
	}
	s.metrics.sessionsCreated.Add(1)
	s.cfg.Hooks.SessionCreated(sess.info())
	st, status := s.newStream(sess, true, false)
	if st == nil { // ended meanwhile (shutdown)
		s.refuseStream(ctx, status, nil)
		return
	}
	// No -stream-max-connection deadline: the stream cannot be resumed.
	w := newHijackWriter(s, st, ctx.Conn(), 0, s.endpointEvent(sid))
	w.http10 = !ctx.Request.Header.IsHTTP11()
	w.legacy = true
	w.writeSince.Store(now)
	s.attachConn(&w.clientConn)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(net.Conn) { w.start() })
}

// endpointEvent is the first event of a legacy session's stream.
func (s *Server) endpointEvent(sid string) []byte {
	ev := sse.Event{Event: []byte("endpoint"), Data: []byte(s.cfg.LegacyMessagePath + "?sessionId=" + sid), Retry: -1}
	return sse.AppendEvent(nil, &ev)
}

// legacyStreamClosed ends a legacy session when its stream's connection
// ended (PROTOCOL.md rule 49). Called by clientConn.detach, outside every
// lock; ending the upstream side is left to the reaper, except once a
// shutdown began (its reaper may be done already): then it is ended here.
func (s *Server) legacyStreamClosed(sess *session, reason CloseReason) {
	if reason == CloseFinished || reason == CloseReplaced {
		reason = CloseClientGone // not session reasons; the session ended already for the first
	}
	how := upstreamLater
	if s.shutting.Load() {
		how = upstreamNow
	}
	s.endSession(context.Background(), sess, reason, how)
}

// legacyClientLeft reports whether the client of a legacy stream's
// connection nc has closed it (or it failed). Nothing else would notice
// before a write to it fails, which for an idle stream is the second
// heartbeat after the close, or never without heartbeats: the session, its
// upstream side (a stdio process) and its message endpoint would outlive
// the stream for that long. The sweeper asks at every visit; a look is one
// system call that never waits. A legacy client sends nothing after its
// GET, so whatever it sent is read and dropped. Where the socket cannot be
// looked at (not Linux; a connection that is no socket of its own, such
// as a TLS one, whose bytes must not be taken) it reports false, and a
// failed write still ends the stream.
func legacyClientLeft(nc net.Conn) bool {
	if !rawsock.Supported {
		return false
	}
	var raw syscall.RawConn
	if gc, ok := nc.(*guardConn); ok {
		raw, nc = gc.raw, gc.Conn
	}
	if sc, ok := nc.(syscall.Conn); ok && raw == nil {
		raw, _ = sc.SyscallConn()
	}
	if raw == nil {
		return false
	}
	left := false
	err := raw.Control(func(fd uintptr) {
		var buf [512]byte
		for range 8 { // a client that keeps sending cannot hold the sweeper
			n, wait := rawsock.Take(fd, buf[:])
			if wait {
				return // open, nothing (more) pending
			}
			if n <= 0 {
				left = true // 0: the end of its input; <0: the socket failed
				return
			}
		}
	})
	return err == nil && left
}

// handleLegacyMessage takes one message POSTed by a legacy client: 202,
// its answer on the session's stream.
func (s *Server) handleLegacyMessage(ctx *fasthttp.RequestCtx, who caller) {
	s.legacyMessage(ctx, who, false)
}

// legacyMessage is handleLegacyMessage; forwarded says another cluster
// node forwarded the message here (cluster_legacy.go), which then does not
// forward it again.
func (s *Server) legacyMessage(ctx *fasthttp.RequestCtx, who caller, forwarded bool) {
	start := s.metrics.now()
	if !mediaIs(mediaType(ctx.Request.Header.ContentType()), "application/json") {
		s.fail(ctx, fasthttp.StatusUnsupportedMediaType, nil, jsonrpc.CodeServerError, "Unsupported Media Type: Content-Type must be application/json", nil)
		return
	}
	sid := ctx.QueryArgs().Peek("sessionId")
	if len(sid) == 0 {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: sessionId query parameter is required", nil)
		return
	}
	if !validSessionID(sid) {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: malformed sessionId", nil)
		return
	}
	sess, ok := s.store.GetBytes(sid)
	if !ok && s.clu != nil && !forwarded {
		// Its stream may be held by another node (cluster_legacy.go).
		s.forwardLegacyMessage(ctx, string(sid), who)
		return
	}
	if !ok || sess.legacy == nil || !s.ownsSession(sess, who) {
		s.fail(ctx, fasthttp.StatusNotFound, nil, jsonrpc.CodeSessionNotFound, "Session not found", nil)
		return
	}
	sess.touch(s.clock.Now())
	st := sess.stream(0)
	if st == nil {
		s.fail(ctx, fasthttp.StatusNotFound, nil, jsonrpc.CodeSessionNotFound, "Session not found", nil)
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
			s.legacyInitialize(ctx, sess, st, body, &msgs[0])
			return
		}
	}
	if sess.legacy.phase.Load() != legacyReady {
		s.legacyBeforeInitialize(ctx, sess, st, msgs)
		return
	}
	if !batch && msgs[0].Kind == jsonrpc.KindRequest && string(msgs[0].Method) == "ping" {
		out := append(make([]byte, 0, 48+len(firstID)), `{"jsonrpc":"2.0","id":`...)
		out = append(out, firstID...)
		s.legacyPush(ctx, sess, st, append(out, `,"result":{}}`...))
		return
	}
	if batch && sess.protocolVersion() != "2025-03-26" {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeInvalidRequest,
			"Invalid Request: batches are not supported in protocol version "+sess.protocolVersion(), nil)
		return
	}
	calls, reply, ok := s.forwardCalls(ctx, sess, body, msgs, batch, firstID, class)
	if !ok {
		return
	}
	switch {
	case reply.Stream != nil && len(calls) == 0:
		_ = reply.Stream.Close()
		s.accepted(ctx)
	case reply.Stream != nil:
		up := reply.Stream
		var done bool
		if done, up = s.legacyAnswerEarly(sess, st, up, calls); done {
			s.accepted(ctx)
			return
		}
		if sess.relayedBy(nil, up, calls) {
			_ = up.Close() // cancelled or the session closed meanwhile: the pump ends
		}
		sess.busy.Add(1) // a call in flight
		if !s.goOwned(func(context.Context) { s.pumpLegacyAnswer(sess, st, up, calls) }) {
			sess.busy.Add(-1)
			_ = up.Close()
			sess.endCalls(calls)
			s.releaseAnswer(sess)
			ctx.Response.Header.Set("Retry-After", "1")
			s.fail(ctx, fasthttp.StatusServiceUnavailable, firstID, jsonrpc.CodeServerError, "Service Unavailable: shutting down", nil)
			return
		}
		s.accepted(ctx)
	case reply.JSON != nil:
		sess.endCalls(calls)
		if len(calls) == 0 {
			s.accepted(ctx)
			return
		}
		answers := legacyAnswers(p, reply.JSON, calls)
		if len(answers) == 0 {
			s.metrics.upstreamErrors[upErrProtocol].Add(1)
			s.log.Warn("upstream answered with no response to the request", "session", shortID(sess.id))
			s.fail(ctx, fasthttp.StatusBadGateway, firstID, jsonrpc.CodeInternalError, "Bad Gateway: upstream answered no request of the message", nil)
			return
		}
		for _, a := range answers {
			if !s.deliver(sess, st, ringbuf.MustDeliver, 0, a, false, nil) {
				s.fail(ctx, fasthttp.StatusNotFound, nil, jsonrpc.CodeSessionNotFound, "Session not found", nil)
				return
			}
		}
		s.accepted(ctx)
	default:
		sess.endCalls(calls)
		if len(calls) > 0 {
			s.metrics.upstreamErrors[upErrProtocol].Add(1)
			s.fail(ctx, fasthttp.StatusBadGateway, firstID, jsonrpc.CodeInternalError, "Bad Gateway: upstream accepted a request without answering it", nil)
			return
		}
		s.accepted(ctx)
	}
}

// legacyInitialize opens the upstream session of a legacy session with the
// client's initialize and pushes the answer into the session's stream.
func (s *Server) legacyInitialize(ctx *fasthttp.RequestCtx, sess *session, st *stream, body []byte, m *jsonrpc.Message) {
	l := sess.legacy
	if m.Kind != jsonrpc.KindRequest {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeInvalidRequest, "Invalid Request: initialize must be a request (with an id)", nil)
		return
	}
	if !l.phase.CompareAndSwap(legacyWaiting, legacyConnecting) {
		s.fail(ctx, fasthttp.StatusBadRequest, m.ID, jsonrpc.CodeInvalidRequest, "Invalid Request: the session is initialized already", nil)
		return
	}
	ready := false
	defer func() {
		if !ready { // the client may try again
			l.phase.CompareAndSwap(legacyConnecting, legacyWaiting)
		}
	}()
	sess.busy.Add(1)                                     // the upstream may take a while (a process starting)
	up, answer, _, ok := s.connectUpstream(ctx, body, m) // legacy sessions end with their stream: never kept for a restart
	sess.busy.Add(-1)
	if !ok {
		return
	}
	if up == nil { // the upstream answered with a JSON-RPC error: relay it
		s.legacyPush(ctx, sess, st, answer)
		return
	}
	version, answer := negotiateClientHop(body, answer, up.Version(), legacyVersions)
	if !l.up.set(up) {
		_ = up.Close(context.Background())
		s.fail(ctx, fasthttp.StatusNotFound, nil, jsonrpc.CodeSessionNotFound, "Session not found: it ended while initialize ran", nil)
		return
	}
	l.version.Store(&version)
	l.phase.Store(legacyReady)
	ready = true
	s.logSessionCreated(sess, up)
	if !s.legacyPush(ctx, sess, st, answer) {
		return
	}
	// Everything else the upstream sends now reaches the stream.
	s.ensureStandalonePump(sess, st)
}

// legacyBeforeInitialize answers messages that arrive before initialize
// opened the upstream session, on the session's stream like every answer
// (an HTTP error would end the client's transport): a ping gets {}, another
// request a JSON-RPC error (-32601 for server/discover, which clients of
// 2026-07-28 send first and then fall back to initialize on any such
// error; -32600 for the rest); notifications are dropped. 202.
func (s *Server) legacyBeforeInitialize(ctx *fasthttp.RequestCtx, sess *session, st *stream, msgs []jsonrpc.Message) {
	for i := range msgs {
		m := &msgs[i]
		if m.Kind != jsonrpc.KindRequest {
			continue
		}
		var answer []byte
		switch string(m.Method) {
		case "ping":
			answer = append(append(append(make([]byte, 0, 48+len(m.ID)), `{"jsonrpc":"2.0","id":`...), m.ID...), `,"result":{}}`...)
		case "server/discover":
			answer = jsonrpc.AppendError(nil, m.ID, jsonrpc.CodeMethodNotFound, "Method not found: server/discover (this is a session: initialize it)", nil)
		default:
			answer = jsonrpc.AppendError(nil, m.ID, jsonrpc.CodeInvalidRequest, "Invalid Request: the session is not initialized", nil)
		}
		if !s.deliver(sess, st, ringbuf.MustDeliver, 0, answer, false, nil) {
			s.fail(ctx, fasthttp.StatusNotFound, nil, jsonrpc.CodeSessionNotFound, "Session not found", nil)
			return
		}
	}
	s.accepted(ctx)
}

// legacyPush stores one must-deliver message in the session's stream and
// answers the POST: 202, or 404 when the session ended.
func (s *Server) legacyPush(ctx *fasthttp.RequestCtx, sess *session, st *stream, msg []byte) bool {
	if !s.deliver(sess, st, ringbuf.MustDeliver, 0, msg, false, nil) {
		s.fail(ctx, fasthttp.StatusNotFound, nil, jsonrpc.CodeSessionNotFound, "Session not found", nil)
		return false
	}
	s.accepted(ctx)
	return true
}

func (s *Server) accepted(ctx *fasthttp.RequestCtx) {
	ctx.SetStatusCode(fasthttp.StatusAccepted)
	s.metrics.status(fasthttp.StatusAccepted)
}

// legacyAnswers splits an upstream JSON answer (a response or a batch of
// them) into the messages for the client, each under its client's id.
func legacyAnswers(p *jsonrpc.Parser, answer []byte, calls []*call) [][]byte {
	mapped, ok := clientAnswer(nil, p, answer, calls)
	if !ok {
		return nil
	}
	msgs, batch, perr := p.Parse(mapped)
	if perr != nil {
		return nil
	}
	if !batch {
		return [][]byte{mapped}
	}
	out := make([][]byte, 0, len(msgs))
	for i := range msgs {
		out = append(out, msgs[i].Raw)
	}
	return out
}

// pumpLegacyAnswer copies one upstream answer stream of a legacy session
// into the session's stream until every call of the POST was answered (as
// pumpAnswer does for a POST answer stream of its own).
func (s *Server) pumpLegacyAnswer(sess *session, st *stream, up upstream.Stream, calls []*call) {
	defer func() {
		sess.busy.Add(-1)
		sess.touch(s.clock.Now())
	}()
	defer s.releaseAnswer(sess)
	defer sess.endCalls(calls)
	defer up.Close()
	pending := newPendingCalls(calls)
	if s.relayAnswers(sess, st, up, &pending, nil) == relayAnswered {
		upstream.Drain(up)
	}
}

// messageEventType names the events that carry messages on a legacy stream.
var messageEventType = []byte("message")

// appendLegacyEvent appends one message event: "event: message", the data
// lines, no id.
func appendLegacyEvent(dst, data []byte) []byte {
	ev := sse.Event{Event: messageEventType, Data: data, HasData: true, Retry: -1}
	return sse.AppendEvent(dst, &ev)
}

// legacyFrameLen is the exact size of appendLegacyEvent's output for data.
func legacyFrameLen(data []byte) int {
	return frameLen(0, 0, data) - len("id: 0_0\n") + len("event: message\n")
}

// encodeLegacyEvent is clientConn.encodeEvent for a legacy stream: the
// same batching, the legacy framing.
func (c *clientConn) encodeLegacyEvent(_ uint64, data []byte) bool {
	if len(c.pending) > 0 {
		return false // an oversized event is parked: it goes out first, alone
	}
	free := len(c.p) - c.n
	if len(data) < free {
		if need := legacyFrameLen(data); need <= free {
			out := appendLegacyEvent(c.p[c.n:c.n], data)
			c.n += len(out)
			return true
		}
	}
	if c.n > 0 {
		return false
	}
	c.frame = appendLegacyEvent(c.frame[:0], data)
	c.pending = c.frame
	return true
}
