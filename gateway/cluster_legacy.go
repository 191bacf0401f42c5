package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// Legacy HTTP+SSE clients on a cluster. A legacy session cannot move: its
// one stream is a connection to the node that took the GET, and the
// transport has no resumption. So its messages go to that node, whichever
// node the balancer sends the client's POSTs to:
//
//   - the GET registers the session (openLegacySession, clusterCreated)
//     with a minimal entry: owner, principal, times and the LegacyClient
//     marker, no protocol version and no upstream binding. No other node
//     builds a copy of it (clusterLoad refuses the entry), and the
//     owner's activity writes keep the entry alive while the stream is
//     open;
//   - a POST to the message path for a session this node does not hold
//     reads the entry once: an unknown session, one that is not a legacy
//     client's or another principal's is 404 here; otherwise the message
//     goes to the owner ("legacy" request: the session id, the caller's
//     principal, the Content-Type, the Authorization header when it is
//     forwarded upstream, and the body), which runs it exactly as a POST
//     of its own (legacyMessage) and returns the status, Content-Type,
//     Retry-After and body it answered, when it answered it: as on the
//     owner, a message is answered once it was handled (an initialize
//     once the upstream session is open, a call once the upstream took
//     it), however long that takes. A node-to-node request is bounded
//     (Cluster.RequestTimeout), so the owner runs the message on a
//     goroutine of its own (legacyRun) and holds the request for half
//     that time at most; a message not handled by then is answered
//     "pending" with a ticket, and the sender asks again ("legacywait")
//     until the answer comes, or the owner is gone. The answers to the
//     message reach the client on its stream, on the owner, as always;
//   - the session's end (its stream's end, whatever caused it, a shutdown
//     included) removes the entry (clusterEnded). An owner that died
//     leaves its entry to the registry's TTL; meanwhile a POST for the
//     session is 404: the owner is gone, and so is the stream.
//
// The status counters count a forwarded message's answer on the owner,
// which ran it (as its latency), not again on the node that relayed it.

// forwardLegacyMessage serves a legacy message POST for a session this
// node does not hold: 404, or the answer of the node holding its stream.
func (s *Server) forwardLegacyMessage(ctx *fasthttp.RequestCtx, sid string, who caller) {
	rctx, cancel := s.rctx()
	defer cancel()
	rec, owner, _, _, err := s.clu.c.LoadSession(rctx, sid)
	s.clu.m.registryReads.Add(1)
	if err != nil {
		s.clu.m.registryErrors.Add(1)
		s.clusterUnavailable(ctx, err)
		return
	}
	// An entry naming this node as the owner outlives the session's end
	// here by a moment (or a crash of this node's previous process with
	// the same id): the session is gone.
	if rec == nil || !rec.LegacyClient || owner == s.clu.id || !s.principalOwns(sid, s.recordPrincipal(rec), who) {
		s.fail(ctx, fasthttp.StatusNotFound, nil, jsonrpc.CodeSessionNotFound, "Session not found", nil)
		return
	}
	var auth []byte
	if s.cfg.ForwardAuthorization {
		// The owner forwards the client's credential upstream, as for a
		// POST it took itself.
		auth = ctx.Request.Header.Peek("Authorization")
	}
	out, err := s.clu.c.Request(rctx, owner, "legacy",
		appendLegacyForward(nil, sid, who.principal, ctx.Request.Header.ContentType(), auth, ctx.PostBody()))
	for err == nil {
		ticket, pending := decodeLegacyPending(out)
		if !pending {
			break
		}
		// Still being handled on the owner: wait for it there again.
		wctx, wcancel := s.rctx()
		out, err = s.clu.c.Request(wctx, owner, "legacywait", appendLegacyWait(nil, ticket, sid))
		wcancel()
	}
	if err != nil {
		s.clu.m.forwardErrors.Add(1)
		s.legacyForwardFailed(ctx, owner, err)
		return
	}
	ans, ok := decodeLegacyAnswer(out)
	if !ok {
		s.clu.m.forwardErrors.Add(1)
		s.fail(ctx, fasthttp.StatusBadGateway, nil, jsonrpc.CodeInternalError, "Bad Gateway: malformed answer from the gateway node holding the session", nil)
		return
	}
	s.clu.m.forwards.Add(1)
	ctx.Response.ResetBody()
	ctx.SetStatusCode(ans.status)
	if len(ans.contentType) > 0 {
		ctx.Response.Header.SetContentTypeBytes(ans.contentType)
	}
	if len(ans.retryAfter) > 0 {
		ctx.Response.Header.SetBytesV("Retry-After", ans.retryAfter)
	}
	if len(ans.body) > 0 {
		ctx.Response.SetBodyRaw(ans.body)
	}
}

// legacyForwardFailed answers a legacy message whose owner node did not
// answer: 404 if the owner is gone (its stream, and so the session, went
// with it), else 504 when it did not answer in time (the message may have
// been carried out) or 503 to try again.
func (s *Server) legacyForwardFailed(ctx *fasthttp.RequestCtx, owner string, err error) {
	if strings.HasPrefix(err.Error(), "remote: ") {
		s.log.Warn("cluster: the node holding a legacy session refused a forwarded message", "owner", owner, "err", err)
		s.fail(ctx, fasthttp.StatusBadGateway, nil, jsonrpc.CodeInternalError, "Bad Gateway: the gateway node holding the session refused the message", nil)
		return
	}
	actx, cancel := s.rctx()
	alive := s.clu.c.NodeAlive(actx, owner)
	cancel()
	switch {
	case !alive:
		s.fail(ctx, fasthttp.StatusNotFound, nil, jsonrpc.CodeSessionNotFound, "Session not found: the gateway node holding its stream is gone", nil)
	case errors.Is(err, context.DeadlineExceeded):
		s.log.Warn("cluster: a forwarded legacy message got no answer in time", "owner", owner, "err", err)
		s.fail(ctx, fasthttp.StatusGatewayTimeout, nil, jsonrpc.CodeInternalError, "Gateway Timeout: the gateway node holding the session did not answer in time", nil)
	default:
		s.log.Warn("cluster: a legacy message not forwarded", "owner", owner, "err", err)
		ctx.Response.Header.Set("Retry-After", "1")
		s.fail(ctx, fasthttp.StatusServiceUnavailable, nil, jsonrpc.CodeServerError, "Service Unavailable: the gateway node holding the session cannot be reached", nil)
	}
}

// legacyRun is a legacy message another node forwarded, run on this node
// by a goroutine of its own; the sender waits for its answer through
// requests each bounded by the request timeout (serveLegacyMessage,
// then serveLegacyWait).
type legacyRun struct {
	ticket uint64
	sid    string
	// done is closed once answer is set.
	done   chan struct{}
	answer []byte
	err    error
	// taken is closed once the answer was handed out; an answer not
	// taken for a while (its sender is gone) is dropped.
	taken     chan struct{}
	takenOnce sync.Once
}

func (r *legacyRun) take() { r.takenOnce.Do(func() { close(r.taken) }) }

// serveLegacyMessage runs a legacy message another node forwarded
// ("legacy") as a POST of this node's own and returns the answer, or, if
// the message is not handled within the request's hold
// (clusterNode.legacyHold), a pending answer with the ticket under which
// the sender asks for it again ("legacywait").
func (s *Server) serveLegacyMessage(body []byte) ([]byte, error) {
	f, ok := decodeLegacyForward(body)
	if !ok {
		return nil, errors.New("malformed legacy message forward")
	}
	s.clu.m.forwardedServed.Add(1)
	run := &legacyRun{sid: f.sid, done: make(chan struct{}), taken: make(chan struct{})}
	l := &s.clu.legacy
	l.mu.Lock()
	l.seq++
	run.ticket = l.seq
	if l.runs == nil {
		l.runs = make(map[uint64]*legacyRun)
	}
	l.runs[run.ticket] = run
	l.mu.Unlock()
	if !s.goOwned(func(ctx context.Context) { s.runForwardedLegacy(ctx, run, f) }) {
		l.forget(run)
		return s.runLegacyMessage(f) // shutting down: refused at once
	}
	return s.awaitLegacyRun(run)
}

// serveLegacyWait answers a "legacywait" request: the answer of the
// forwarded legacy message named by its ticket, or pending again.
func (s *Server) serveLegacyWait(body []byte) ([]byte, error) {
	ticket, sid, ok := decodeLegacyWait(body)
	if !ok {
		return nil, errors.New("malformed legacy message wait")
	}
	l := &s.clu.legacy
	l.mu.Lock()
	run := l.runs[ticket]
	l.mu.Unlock()
	if run == nil || run.sid != sid {
		return nil, errors.New("no such forwarded legacy message (its answer was given, or given up)")
	}
	return s.awaitLegacyRun(run)
}

// awaitLegacyRun waits up to the hold for run's answer: the answer (handed
// out once), or a pending answer.
func (s *Server) awaitLegacyRun(run *legacyRun) ([]byte, error) {
	t := time.NewTimer(s.clu.legacyHold)
	defer t.Stop()
	select {
	case <-run.done:
		run.take()
		s.clu.legacy.forget(run)
		return run.answer, run.err
	case <-t.C:
		return appendLegacyPending(nil, run.ticket), nil
	}
}

// runForwardedLegacy runs a forwarded legacy message (serveLegacyMessage),
// then keeps its answer until the sender took it, or for a while (the
// sender is gone), or until the server's end.
func (s *Server) runForwardedLegacy(ctx context.Context, run *legacyRun, f legacyForward) {
	defer s.clu.legacy.forget(run)
	run.answer, run.err = s.runLegacyMessage(f)
	close(run.done)
	t := time.NewTimer(4 * s.clu.legacyHold)
	defer t.Stop()
	select {
	case <-run.taken:
	case <-t.C:
	case <-ctx.Done():
	}
}

// legacyRuns are the forwarded legacy messages this node runs or holds the
// answers of, by ticket.
type legacyRuns struct {
	// mu guards runs and seq; a leaf.
	mu   sync.Mutex
	runs map[uint64]*legacyRun
	seq  uint64
}

func (l *legacyRuns) forget(run *legacyRun) {
	l.mu.Lock()
	if l.runs[run.ticket] == run {
		delete(l.runs, run.ticket)
	}
	l.mu.Unlock()
}

// runLegacyMessage runs a forwarded legacy message as a POST of this
// node's own, on a request context of its own, and returns the answer.
func (s *Server) runLegacyMessage(f legacyForward) (out []byte, err error) {
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(new(fasthttp.Request), nil, nil)
	defer func() {
		// A panic must not take the node down: on the HTTP path
		// finishRequest recovers it, here the sender gets an error.
		if r := recover(); r != nil {
			s.log.Error("panic serving a forwarded legacy message", "panic", r, "stack", string(debug.Stack()))
			out, err = nil, errors.New("internal error")
		}
	}()
	req := &ctx.Request
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(s.cfg.LegacyMessagePath)
	req.URI().QueryArgs().Set("sessionId", f.sid)
	req.Header.SetContentTypeBytes(f.contentType)
	if len(f.auth) > 0 {
		req.Header.SetBytesV("Authorization", f.auth)
	}
	req.SetBodyRaw(f.body)
	if !s.refuseWhileShutting(ctx) {
		s.legacyMessage(ctx, caller{principal: f.principal}, true)
	}
	resp := &ctx.Response
	return appendLegacyAnswer(nil, resp.StatusCode(), resp.Header.Peek("Retry-After"), resp.Header.ContentType(), resp.Body()), nil
}

// clusterForget removes the registry entry of a session that never became
// one (registered, then refused by the store). Without a cluster it does
// nothing.
func (s *Server) clusterForget(sess *session) {
	if sess.cluster == nil {
		return
	}
	s.removeEntry(sess, "cluster: the entry of a refused session not removed: it leaves by its TTL")
}

// The "legacy" request is the session id, the principal, the
// Content-Type and the Authorization header (each a uvarint length, then
// the bytes), then the body. Its answer is the status (a uvarint), the
// Retry-After and the Content-Type (as above), then the body.

func appendLegacyForward(dst []byte, sid, principal string, contentType, auth, body []byte) []byte {
	dst = appendField(dst, []byte(sid))
	dst = appendField(dst, []byte(principal))
	dst = appendField(dst, contentType)
	dst = appendField(dst, auth)
	return append(dst, body...)
}

type legacyForward struct {
	sid, principal          string
	contentType, auth, body []byte
}

func decodeLegacyForward(b []byte) (f legacyForward, ok bool) {
	var sid, principal []byte
	for _, p := range []*[]byte{&sid, &principal, &f.contentType, &f.auth} {
		if *p, b, ok = cutField(b); !ok {
			return f, false
		}
	}
	f.sid, f.principal, f.body = string(sid), string(principal), b
	return f, true
}

// A pending answer (the message is still being handled) is a status of 0,
// then the ticket (a uvarint); "legacywait" is the ticket (a uvarint),
// then the session id.

func appendLegacyPending(dst []byte, ticket uint64) []byte {
	return binary.AppendUvarint(binary.AppendUvarint(dst, 0), ticket)
}

// decodeLegacyPending reads a pending answer; pending is false for any
// other answer.
func decodeLegacyPending(b []byte) (ticket uint64, pending bool) {
	if st, n := binary.Uvarint(b); n != 1 || st != 0 {
		return 0, false
	}
	ticket, n := binary.Uvarint(b[1:])
	return ticket, n > 0 && n == len(b)-1
}

func appendLegacyWait(dst []byte, ticket uint64, sid string) []byte {
	return append(binary.AppendUvarint(dst, ticket), sid...)
}

func decodeLegacyWait(b []byte) (ticket uint64, sid string, ok bool) {
	ticket, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, "", false
	}
	return ticket, string(b[n:]), true
}

func appendLegacyAnswer(dst []byte, status int, retryAfter, contentType, body []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(status))
	dst = appendField(dst, retryAfter)
	dst = appendField(dst, contentType)
	return append(dst, body...)
}

type legacyAnswer struct {
	status                        int
	retryAfter, contentType, body []byte
}

func decodeLegacyAnswer(b []byte) (a legacyAnswer, ok bool) {
	st, n := binary.Uvarint(b)
	if n <= 0 || st < 100 || st > 599 {
		return a, false
	}
	a.status, b = int(st), b[n:]
	if a.retryAfter, b, ok = cutField(b); !ok {
		return a, false
	}
	if a.contentType, b, ok = cutField(b); !ok {
		return a, false
	}
	a.body = b
	return a, true
}

func appendField(dst, v []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(v))), v...)
}

// cutField reads a field written by appendField; the value aliases b.
func cutField(b []byte) (v, rest []byte, ok bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return nil, nil, false
	}
	b = b[n:]
	return b[:l:l], b[l:], true
}
