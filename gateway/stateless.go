package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"strings"

	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// JSON-RPC error codes of the stateless revision.
const (
	CodeHeaderMismatch              = -32020
	CodeMissingRequiredCapabilities = -32021
)

// removedMethods are not part of the stateless revision (PROTOCOL.md
// section 2, rule 42): 404 with -32601.
var removedMethods = map[string]bool{
	"initialize": true, "ping": true, "logging/setLevel": true,
	"resources/subscribe": true, "resources/unsubscribe": true,
}

// isStatelessRequest reports whether a POST belongs to the stateless
// revision (rule 38): its MCP-Protocol-Version header says so, or, on a
// request without a session that is not initialize, its _meta does. The
// body is only looked into when the headers cannot tell, so session-era
// requests pay nothing.
func isStatelessRequest(ctx *fasthttp.RequestCtx, m *jsonrpc.Message) bool {
	hasSession := len(ctx.Request.Header.Peek("Mcp-Session-Id")) > 0
	if v := bytes.TrimSpace(ctx.Request.Header.Peek("MCP-Protocol-Version")); len(v) > 0 {
		// A later revision on a session request is a session-era request
		// with a version the gateway does not serve (-32022 there).
		return string(v) == statelessVersion || (isStatelessVersion(v) && !hasSession)
	}
	if hasSession || string(m.Method) == "initialize" {
		return false
	}
	_, ok := jsonrpc.Lookup(m.Raw, "params", "_meta", metaProtocolVersion)
	return ok
}

// handleStateless serves a POST of the stateless revision: validated
// against its headers (rules 39-43), then forwarded to the upstream's
// stateless face (the upstream itself, or the session pool that bridges to
// a session-era upstream). It touches no session shard; an answer that
// streams gets a one-request session (ephemeral) with a ring, the drop
// policy and heartbeats, but no event ids and no resumption.
func (s *Server) handleStateless(ctx *fasthttp.RequestCtx, body []byte, msgs []jsonrpc.Message, batch bool, class methodClass, who caller) {
	s.metrics.statelessRequests.Add(1)
	if batch {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeInvalidRequest, "Invalid Request: batches are not part of protocol version "+statelessVersion, nil)
		return
	}
	m := &msgs[0]
	id := m.ID
	if m.Kind == jsonrpc.KindResponse || m.Kind == jsonrpc.KindError {
		s.fail(ctx, fasthttp.StatusBadRequest, id, jsonrpc.CodeInvalidRequest, "Invalid Request: clients of protocol version "+statelessVersion+" never send responses", nil)
		return
	}
	method := string(m.Method)
	headerVersion := string(bytes.TrimSpace(ctx.Request.Header.Peek("MCP-Protocol-Version")))
	if m.Kind == jsonrpc.KindRequest {
		rawVersion, ok := jsonrpc.Lookup(m.Raw, "params", "_meta", metaProtocolVersion)
		metaVersion, _ := jsonrpc.Unquote(rawVersion)
		switch {
		case !ok || metaVersion == "":
			s.fail(ctx, fasthttp.StatusBadRequest, id, jsonrpc.CodeInvalidParams, "Invalid params: _meta lacks "+metaProtocolVersion, nil)
			return
		case headerVersion != metaVersion:
			s.fail(ctx, fasthttp.StatusBadRequest, id, CodeHeaderMismatch, "Header mismatch: MCP-Protocol-Version must equal _meta "+metaProtocolVersion, nil)
			return
		case metaVersion != statelessVersion:
			s.unsupportedVersion(ctx, id, []byte(metaVersion))
			return
		}
		if _, ok := jsonrpc.Lookup(m.Raw, "params", "_meta", metaClientCapabilities); !ok {
			s.fail(ctx, fasthttp.StatusBadRequest, id, jsonrpc.CodeInvalidParams, "Invalid params: _meta lacks "+metaClientCapabilities, nil)
			return
		}
	}
	hdrMethod, ok := headerValue(ctx, "Mcp-Method")
	if !ok || hdrMethod != method {
		s.fail(ctx, fasthttp.StatusBadRequest, id, CodeHeaderMismatch, "Header mismatch: Mcp-Method must equal the body's method", nil)
		return
	}
	params, _ := jsonrpc.Lookup(m.Raw, "params")
	if want, has := upstream.NameOf(method, params); has {
		got, ok := headerValue(ctx, "Mcp-Name")
		if !ok || got != want {
			s.fail(ctx, fasthttp.StatusBadRequest, id, CodeHeaderMismatch, "Header mismatch: Mcp-Name must equal the body's name (uri for resources/read)", nil)
			return
		}
	}
	hdr := []upstream.Header{{Name: "MCP-Protocol-Version", Value: statelessVersion}, {Name: "Mcp-Method", Value: method}}
	if v, ok := headerValue(ctx, "Mcp-Name"); ok {
		hdr = append(hdr, upstream.Header{Name: "Mcp-Name", Value: upstream.HeaderValue(v)})
	}
	bad := false
	ctx.Request.Header.VisitAll(func(k, v []byte) {
		if len(k) > len("Mcp-Param-") && bytes.EqualFold(k[:len("Mcp-Param-")], []byte("Mcp-Param-")) {
			if _, ok := decodeHeaderValue(string(bytes.TrimSpace(v))); !ok {
				bad = true
			}
			// Forwarded as received: the upstream knows its tools' schemas.
			hdr = append(hdr, upstream.Header{Name: string(k), Value: string(bytes.TrimSpace(v))})
		}
	})
	if bad {
		s.fail(ctx, fasthttp.StatusBadRequest, id, CodeHeaderMismatch, "Header mismatch: an Mcp-Param header has an invalid =?base64?...?= value", nil)
		return
	}
	if m.Kind == jsonrpc.KindRequest && removedMethods[method] {
		s.fail(ctx, fasthttp.StatusNotFound, id, jsonrpc.CodeMethodNotFound, "Method not found: "+method+" is not part of protocol version "+statelessVersion, nil)
		return
	}
	if method == "subscriptions/listen" && s.draining.Load() {
		// A new stream connection: the drain would only end it again
		// (no listen outlives the process, state file or not).
		ctx.Response.Header.Set("Retry-After", "1")
		s.fail(ctx, fasthttp.StatusServiceUnavailable, id, jsonrpc.CodeServerError, "Service Unavailable: the gateway is draining", nil)
		return
	}
	s.forwardStateless(ctx, body, msgs, hdr, id, class, who)
}

// forwardStateless sends a validated stateless message upstream and relays
// the answer.
func (s *Server) forwardStateless(ctx *fasthttp.RequestCtx, body []byte, msgs []jsonrpc.Message, hdr []upstream.Header, id []byte, class methodClass, who caller) {
	_, st, _ := s.Upstreams(s.upstreamCtx(ctx)) // a detection carries the client's forwarded credential
	sess := s.newEphemeral(string(msgs[0].Method) == "subscriptions/listen")
	sess.principal = who.principal
	calls, _ := sess.beginCalls(msgs)
	if len(calls) > 0 {
		s.reserveAnswer(sess) // a new session's one answer always has its place
	}
	fwd := body
	if len(calls) > 0 {
		fwd = upstreamBody(make([]byte, 0, len(body)+8), sess, body, msgs, calls, false)
	}
	// The client's credential (with -upstream-auth forward) and principal:
	// the session pool never shares a session across principals, nor
	// across forwarded credentials (a session opened with one client's
	// token must never serve another client, anonymous ones included).
	reqCtx, cancel := context.WithTimeout(s.upstreamCtx(ctx), s.cfg.UpstreamTimeout)
	if sess.principal != "" {
		reqCtx = upstream.WithPrincipal(reqCtx, sess.principal)
	}
	s.metrics.requests.Add(1)
	upStart := s.metrics.now()
	reply, err := st.Do(reqCtx, hdr, fwd)
	cancel()
	s.metrics.observe(&s.metrics.upstreamLatency[class], upStart)
	if err != nil {
		s.endEphemeral(sess)
		var se *upstream.StatusError
		if errors.As(err, &se) && se.Status >= 400 && se.Status < 500 {
			// The upstream refused it (a header it validates, a method it
			// lacks): relay its status and JSON-RPC body.
			s.relayRefusal(ctx, se, calls, id)
			return
		}
		s.metrics.upstreamFailure(err)
		s.log.Warn("upstream error (stateless request)", "err", err)
		code, msg := fasthttp.StatusBadGateway, "Bad Gateway: upstream error"
		if errors.Is(err, upstream.ErrTimeout) {
			code, msg = fasthttp.StatusGatewayTimeout, "Gateway Timeout: upstream did not answer in time"
		}
		s.fail(ctx, code, id, jsonrpc.CodeInternalError, msg, nil)
		return
	}
	s.upstreamSucceeded()
	if len(calls) > 0 && reply.Stream == nil {
		s.releaseAnswer(sess)
	}
	switch {
	case reply.Stream != nil && len(calls) > 0:
		s.openPostStream(ctx, sess, reply.Stream, calls, id)
		return // the ephemeral session ends with the answer's connection
	case reply.Stream != nil:
		_ = reply.Stream.Close()
		ctx.SetStatusCode(fasthttp.StatusAccepted)
		s.metrics.status(fasthttp.StatusAccepted)
	case reply.JSON != nil && len(calls) > 0:
		var p jsonrpc.Parser
		answer, ok := clientAnswer(make([]byte, 0, len(reply.JSON)+16), &p, reply.JSON, calls)
		if !ok {
			s.metrics.upstreamErrors[upErrProtocol].Add(1)
			s.fail(ctx, fasthttp.StatusBadGateway, id, jsonrpc.CodeInternalError, "Bad Gateway: upstream answered no request of the message", nil)
			break
		}
		status := statelessStatus(answer)
		ctx.SetStatusCode(status)
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(answer)
		s.metrics.status(status)
	case len(calls) > 0:
		s.metrics.upstreamErrors[upErrProtocol].Add(1)
		s.fail(ctx, fasthttp.StatusBadGateway, id, jsonrpc.CodeInternalError, "Bad Gateway: upstream accepted a request without answering it", nil)
	default:
		ctx.SetStatusCode(fasthttp.StatusAccepted)
		s.metrics.status(fasthttp.StatusAccepted)
	}
	s.endEphemeral(sess)
}

// statelessStatus is the HTTP status of a JSON answer of the stateless
// revision (rule 43): 404 for -32601, 400 for the invalid-request family,
// else 200.
func statelessStatus(answer []byte) int {
	raw, ok := jsonrpc.Lookup(answer, "error", "code")
	if !ok {
		return fasthttp.StatusOK
	}
	switch string(raw) {
	case "-32601":
		return fasthttp.StatusNotFound
	case "-32600", "-32602", "-32700", "-32020", "-32021", "-32022":
		return fasthttp.StatusBadRequest
	}
	return fasthttp.StatusOK
}

// newEphemeral returns a one-request session for a stateless request
// (listen: a subscriptions/listen).
func (s *Server) newEphemeral(listen bool) *session {
	now := s.clock.Now()
	sess := &session{id: "stateless", version: statelessVersion,
		ephemeral: true, listen: listen, created: now}
	sess.lastActive.Store(now)
	s.ephemeral.Store(sess, struct{}{})
	return sess
}

// endEphemeral ends a stateless request's session: its answer stream is
// closed upstream if it had not finished (the revision's cancellation), and
// the sweeper forgets it. Idempotent.
func (s *Server) endEphemeral(sess *session) {
	sess.mu.Lock()
	if sess.closed {
		sess.mu.Unlock()
		return
	}
	sess.closed = true
	sess.closeReason = CloseClientGone
	streams := sess.streams.snapshot()
	sess.mu.Unlock()
	s.ephemeral.Delete(sess)
	sess.cancel()
	for _, st := range streams {
		if !st.ring.Closed() {
			// Ended before its answers: the client's close cancels the
			// request upstream. A finished stream's pump reads the
			// upstream answer to its end and closes it itself, so its
			// connection goes back to the pool (closing it here, while
			// the terminating chunk is still on its way, cost a new
			// upstream connection per request).
			st.closeUpstream()
		}
		s.finishStream(st)
	}
}

// headerValue returns a stateless header's value without surrounding
// whitespace (RFC 9110 section 5.5), decoded from =?base64?...?= if so
// encoded; ok is false when it is absent or its encoding is invalid.
func headerValue(ctx *fasthttp.RequestCtx, name string) (string, bool) {
	v := ctx.Request.Header.Peek(name)
	if v == nil {
		return "", false
	}
	return decodeHeaderValue(string(bytes.TrimSpace(v)))
}

// decodeHeaderValue decodes =?base64?<standard base64>?=; other values are
// literal. Invalid base64 (padding, alphabet) is refused.
func decodeHeaderValue(v string) (string, bool) {
	inner, ok := strings.CutPrefix(v, "=?base64?")
	if !ok {
		return v, true
	}
	inner, ok = strings.CutSuffix(inner, "?=")
	if !ok {
		return v, true // no suffix: a literal value
	}
	b, err := base64.StdEncoding.Strict().DecodeString(inner)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// versionData is the -32022 error data: the versions served and the one
// requested.
func versionData(requested string) []byte {
	data := []byte(`{"supported":[`)
	for i, v := range allVersions {
		if i > 0 {
			data = append(data, ',')
		}
		data = jsonrpc.AppendString(data, v)
	}
	data = append(data, `],"requested":`...)
	data = jsonrpc.AppendString(data, requested)
	return append(data, '}')
}
