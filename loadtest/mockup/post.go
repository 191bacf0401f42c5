package mockup

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/mcpgate/mcpgate/gateway/sse"
	"github.com/mcpgate/mcpgate/loadtest/pace"
)

const metaVersionKey = "io.modelcontextprotocol/protocolVersion"
const metaCapsKey = "io.modelcontextprotocol/clientCapabilities"

func marshalSnapshot(snap Snapshot) ([]byte, error) { return json.Marshal(snap) }

// call is one JSON-RPC request being answered.
type call struct {
	ctx       *fasthttp.RequestCtx
	sess      *session // nil for stateless requests
	stateless bool
	id        []byte // raw JSON id
	method    string
	params    *fastjson.Value // may be nil
}

func (s *Server) handlePost(ctx *fasthttp.RequestCtx) {
	if !bytes.HasPrefix(bytes.ToLower(ctx.Request.Header.ContentType()), []byte("application/json")) {
		s.fail(ctx, fasthttp.StatusUnsupportedMediaType, nil, CodeTransport, "Content-Type must be application/json", nil)
		return
	}
	if !acceptsAll(ctx.Request.Header.Peek("Accept")) {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, CodeTransport, "Accept must include application/json and text/event-stream", nil)
		return
	}
	body := ctx.PostBody()
	if len(body) == 0 {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, CodeTransport, "empty body", nil)
		return
	}
	p := s.parsers.Get()
	defer s.parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, CodeParseError, "parse error", nil)
		return
	}
	if v.Type() == fastjson.TypeArray {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, CodeInvalidRequest, "batches are not supported", nil)
		return
	}
	if v.Type() != fastjson.TypeObject {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, CodeInvalidRequest, "not a JSON-RPC message", nil)
		return
	}
	var id []byte
	if idv := v.Get("id"); idv != nil {
		id = idv.MarshalTo(nil)
	}
	methodBytes := v.GetStringBytes("method")
	if methodBytes == nil {
		if id != nil && (v.Exists("result") || v.Exists("error")) {
			ctx.SetStatusCode(fasthttp.StatusAccepted) // a response from the client
			return
		}
		s.fail(ctx, fasthttp.StatusBadRequest, id, CodeInvalidRequest, "not a JSON-RPC message", nil)
		return
	}
	c := &call{ctx: ctx, id: id, method: string(methodBytes), params: v.Get("params")}
	s.stats.methods[methodIndex(c.method)].Add(1)

	if hv := string(ctx.Request.Header.Peek("MCP-Protocol-Version")); hv >= Version20260728 || (c.params != nil && c.params.Exists("_meta", metaVersionKey)) {
		s.handleStateless(c)
		return
	}
	if s.cfg.Era == EraStateless {
		if c.method == "initialize" {
			s.fail(ctx, fasthttp.StatusNotFound, id, CodeMethodNotFound, "method not found", nil)
			return
		}
		s.fail(ctx, fasthttp.StatusBadRequest, id, CodeInvalidParams, "missing _meta protocolVersion", nil)
		return
	}
	if c.method == "initialize" {
		s.initialize(c)
		return
	}
	sess, ok := s.sessionFromHeader(ctx)
	if !ok {
		return
	}
	if hv := ctx.Request.Header.Peek("MCP-Protocol-Version"); len(hv) > 0 && !supportedSessionVersion(string(hv)) {
		s.fail(ctx, fasthttp.StatusBadRequest, id, CodeUnsupportedVersion, "unsupported protocol version", versionData(string(hv)))
		return
	}
	c.sess = sess
	if id == nil {
		if c.method == "notifications/cancelled" && c.params != nil {
			if rid := c.params.Get("requestId"); rid != nil {
				sess.cancelCall(string(rid.MarshalTo(nil)))
			}
		}
		ctx.SetStatusCode(fasthttp.StatusAccepted)
		return
	}
	s.dispatch(c)
}

func versionData(requested string) []byte {
	b, _ := json.Marshal(map[string]any{
		"supported": []string{Version20250326, Version20250618, Version20251125, Version20260728},
		"requested": requested,
	})
	return b
}

func (s *Server) initialize(c *call) {
	ctx := c.ctx
	if len(ctx.Request.Header.Peek("Mcp-Session-Id")) > 0 {
		s.fail(ctx, fasthttp.StatusBadRequest, c.id, CodeInvalidRequest, "initialize must not carry a session id", nil)
		return
	}
	if c.id == nil {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, CodeInvalidRequest, "initialize must be a request", nil)
		return
	}
	if hv := ctx.Request.Header.Peek("MCP-Protocol-Version"); len(hv) > 0 && !supportedSessionVersion(string(hv)) {
		s.fail(ctx, fasthttp.StatusBadRequest, c.id, CodeUnsupportedVersion, "unsupported protocol version", versionData(string(hv)))
		return
	}
	if s.stats.sessionsActive.Add(1) > int64(s.cfg.MaxSessions) {
		s.stats.sessionsActive.Add(-1)
		s.stats.sessionsRefused.Add(1)
		s.fail(ctx, fasthttp.StatusServiceUnavailable, c.id, CodeTransport, "too many sessions", nil)
		return
	}
	version := LatestSessionVersion
	if c.params != nil {
		if v := string(c.params.GetStringBytes("protocolVersion")); supportedSessionVersion(v) {
			version = v
		}
	}
	sess := newSession(s, uuid.NewString(), version)
	s.sessions.Store(sess.id, sess)
	s.stats.sessionsCreated.Add(1)
	if s.cfg.PushRate > 0 {
		if _, err := sess.setPush(s.cfg.PushRate, s.cfg.PushPad, 1); err != nil {
			s.fail(ctx, fasthttp.StatusServiceUnavailable, c.id, CodeTransport, "shutting down", nil)
			return
		}
	}
	c.sess = sess
	ctx.Response.Header.Set("Mcp-Session-Id", sess.id)
	s.answer(c, endResult(appendInitializeResult(nil, version), false))
}

// handleStateless serves a 2026-07-28 request.
func (s *Server) handleStateless(c *call) {
	ctx := c.ctx
	s.stats.statelessRequests.Add(1)
	c.stateless = true
	if s.cfg.Era == EraSession {
		s.fail(ctx, fasthttp.StatusBadRequest, c.id, CodeUnsupportedVersion, "unsupported protocol version", versionData(Version20260728))
		return
	}
	var metaVersion string
	if c.params != nil {
		metaVersion = string(c.params.GetStringBytes("_meta", metaVersionKey))
	}
	headerVersion := string(ctx.Request.Header.Peek("MCP-Protocol-Version"))
	switch {
	case metaVersion == "":
		s.fail(ctx, fasthttp.StatusBadRequest, c.id, CodeInvalidParams, "missing _meta protocolVersion", nil)
		return
	case headerVersion != metaVersion:
		s.fail(ctx, fasthttp.StatusBadRequest, c.id, CodeHeaderMismatch, "MCP-Protocol-Version does not match _meta", nil)
		return
	case metaVersion != Version20260728:
		s.fail(ctx, fasthttp.StatusBadRequest, c.id, CodeUnsupportedVersion, "unsupported protocol version", versionData(metaVersion))
		return
	case !c.params.Exists("_meta", metaCapsKey):
		s.fail(ctx, fasthttp.StatusBadRequest, c.id, CodeInvalidParams, "missing _meta clientCapabilities", nil)
		return
	case string(ctx.Request.Header.Peek("Mcp-Method")) != c.method:
		s.fail(ctx, fasthttp.StatusBadRequest, c.id, CodeHeaderMismatch, "Mcp-Method does not match the body", nil)
		return
	}
	if c.method == "tools/call" {
		if string(ctx.Request.Header.Peek("Mcp-Name")) != string(c.params.GetStringBytes("name")) {
			s.fail(ctx, fasthttp.StatusBadRequest, c.id, CodeHeaderMismatch, "Mcp-Name does not match the body", nil)
			return
		}
	}
	if c.id == nil {
		ctx.SetStatusCode(fasthttp.StatusAccepted)
		return
	}
	switch c.method {
	case "initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe":
		s.fail(ctx, fasthttp.StatusNotFound, c.id, CodeMethodNotFound, "method not found", nil)
		return
	}
	s.dispatch(c)
}

// dispatch answers a request of either era.
func (s *Server) dispatch(c *call) {
	switch c.method {
	case "ping":
		s.answer(c, endResult([]byte("{"), false))
	case "logging/setLevel":
		s.answer(c, endResult([]byte("{"), false))
	case "server/discover":
		s.answer(c, endResult(appendDiscoverResult(nil, s.cfg.Era), c.stateless))
	case "tools/list":
		s.answer(c, endResult([]byte(toolsList), c.stateless))
	case "resources/list":
		s.answer(c, endResult([]byte(`{"resources":[]`), c.stateless))
	case "prompts/list":
		s.answer(c, endResult([]byte(`{"prompts":[]`), c.stateless))
	case "tools/call":
		s.toolCall(c)
	default:
		status := fasthttp.StatusOK
		if c.stateless {
			status = fasthttp.StatusNotFound
		}
		s.fail(c.ctx, status, c.id, CodeMethodNotFound, "method not found", nil)
	}
}

func intArg(args *fastjson.Value, key string, def int) (int, bool) {
	if args == nil || !args.Exists(key) {
		return def, true
	}
	n, err := args.Get(key).Int()
	return n, err == nil && n >= 0
}

func floatArg(args *fastjson.Value, key string) (float64, bool) {
	if args == nil || !args.Exists(key) {
		return 0, true
	}
	f, err := args.Get(key).Float64()
	return f, err == nil && f >= 0
}

func (s *Server) toolCall(c *call) {
	if c.params == nil {
		s.fail(c.ctx, fasthttp.StatusOK, c.id, CodeInvalidParams, "missing params", nil)
		return
	}
	name := string(c.params.GetStringBytes("name"))
	s.stats.tools[toolIndex(name)].Add(1)
	args := c.params.Get("arguments")
	switch name {
	case "echo":
		size, ok := intArg(args, "size", 0)
		if !ok || size > s.cfg.MaxPayload {
			s.fail(c.ctx, fasthttp.StatusOK, c.id, CodeInvalidParams, "bad size", nil)
			return
		}
		var text string
		if args != nil {
			text = string(args.GetStringBytes("text"))
		}
		s.answer(c, endResult(appendEchoResult(nil, text, size), c.stateless))
	case "push":
		rate, ok1 := floatArg(args, "rate")
		pad, ok2 := intArg(args, "pad", s.cfg.PushPad)
		burst, ok3 := intArg(args, "burst", 1)
		if !ok1 || !ok2 || !ok3 || pad > s.cfg.MaxPayload || burst < 1 || burst > maxPushBurst {
			s.fail(c.ctx, fasthttp.StatusOK, c.id, CodeInvalidParams, "bad rate, pad or burst", nil)
			return
		}
		if c.sess == nil {
			s.answer(c, endResult(append(appendTextResult(nil, "push needs a session"), `,"isError":true`...), c.stateless))
			return
		}
		last, err := c.sess.setPush(rate, pad, burst)
		if err != nil {
			s.fail(c.ctx, fasthttp.StatusServiceUnavailable, c.id, CodeTransport, "shutting down", nil)
			return
		}
		s.answer(c, endResult(appendPushResult(nil, last, rate), c.stateless))
	case "stream":
		s.streamTool(c, args)
	case "notify":
		kind := "tools"
		if args != nil && args.Exists("kind") {
			kind = string(args.GetStringBytes("kind"))
		}
		if !listChangedKind(kind) {
			s.fail(c.ctx, fasthttp.StatusOK, c.id, CodeInvalidParams, "bad kind", nil)
			return
		}
		if c.sess == nil {
			s.answer(c, endResult(append(appendTextResult(nil, "notify needs a session"), `,"isError":true`...), c.stateless))
			return
		}
		seq, err := c.sess.notifyListChanged(kind)
		if err != nil {
			s.fail(c.ctx, fasthttp.StatusNotFound, c.id, CodeSessionNotFound, "session not found", nil)
			return
		}
		s.answer(c, endResult(appendNotifyResult(nil, kind, seq), c.stateless))
	default:
		s.fail(c.ctx, fasthttp.StatusOK, c.id, CodeInvalidParams, "unknown tool", nil)
	}
}

// answer sends a result, as JSON or (AnswerSSE) as a one-event SSE stream.
func (s *Server) answer(c *call, result []byte) {
	if !s.cfg.AnswerSSE {
		s.stats.resultJSON.Add(1)
		c.ctx.SetContentType("application/json")
		c.ctx.SetBody(appendResponse(c.ctx.Response.Body()[:0], c.id, result))
		return
	}
	st, ok := s.openAnswerStream(c)
	if !ok {
		return
	}
	msg := appendResponse(nil, c.id, result)
	if d := s.cfg.AnswerDelay; d > 0 {
		// The headers go out at once and the event d later, as from a
		// server that sends its headers before it works on the answer.
		s.attachAnswer(c, st)
		if s.goStart(func() { s.answerAfter(d, st, msg) }) != nil {
			st.finish() // shutting down
		}
		return
	}
	s.endAnswer(st, msg)
	s.attachAnswer(c, st)
}

// answerAfter ends st with msg after d, or at once when the server shuts
// down (an owned goroutine: Shutdown waits for it).
func (s *Server) answerAfter(d time.Duration, st *stream, msg []byte) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
	}
	s.endAnswer(st, msg)
}

// endAnswer puts a one-event answer's event on st and ends it.
func (s *Server) endAnswer(st *stream, msg []byte) {
	if st.append(s.ctx, msg) == nil {
		s.stats.resultSSE.Add(1)
	}
	st.finish()
}

// openAnswerStream creates the SSE stream answering c.
func (s *Server) openAnswerStream(c *call) (*stream, bool) {
	s.stats.postStreams.Add(1)
	if c.sess == nil {
		return newStream(s, 0, false, false), true
	}
	st, ok := c.sess.newPostStream()
	if !ok {
		s.fail(c.ctx, fasthttp.StatusNotFound, nil, CodeSessionNotFound, "session not found", nil)
		return nil, false
	}
	return st, true
}

// attachAnswer attaches the POST's own reader to st and starts the SSE answer. Sessions
// at 2025-11-25 get a priming event (an id and empty data) first.
func (s *Server) attachAnswer(c *call, st *stream) {
	var prefix []byte
	if c.sess != nil && c.sess.version >= Version20251125 {
		prefix = sse.AppendStreamEvent(nil, st.num, 0, nil)
	}
	r, err := st.attach(1, prefix, c.sess)
	if err != nil {
		s.fail(c.ctx, fasthttp.StatusNotFound, nil, CodeSessionNotFound, "session not found", nil)
		return
	}
	s.startSSE(c.ctx, r)
}

// streamTool runs the stream tool: count progress notifications at rate, then the
// result, on the POST's SSE answer.
func (s *Server) streamTool(c *call, args *fastjson.Value) {
	count, ok1 := intArg(args, "count", DefaultStreamCount)
	rate, ok2 := floatArg(args, "rate")
	pad, ok3 := intArg(args, "pad", 0)
	if !ok1 || !ok2 || !ok3 || count > s.cfg.MaxStreamCount || pad > s.cfg.MaxPayload {
		s.fail(c.ctx, fasthttp.StatusOK, c.id, CodeInvalidParams, "bad count, rate or pad", nil)
		return
	}
	var token []byte
	if tv := c.params.Get("_meta", "progressToken"); tv != nil {
		token = tv.MarshalTo(nil)
	}
	st, ok := s.openAnswerStream(c)
	if !ok {
		return
	}
	parent := s.ctx
	if c.sess != nil {
		parent = c.sess.ctx
	}
	callCtx, cancel := context.WithCancel(parent)
	st.mu.Lock()
	st.cancel = cancel
	st.mu.Unlock()
	id := c.id
	sess := c.sess
	if sess != nil {
		sess.trackCall(string(id), cancel)
	}
	err := s.goStart(func() {
		defer cancel()
		if sess != nil {
			defer sess.untrackCall(string(id))
		}
		s.produceStream(callCtx, st, id, token, uint64(count), rate, pad, c.stateless)
	})
	if err != nil {
		cancel()
		s.fail(c.ctx, fasthttp.StatusServiceUnavailable, c.id, CodeTransport, "shutting down", nil)
		return
	}
	s.attachAnswer(c, st)
}

// produceStream is the stream tool's producer goroutine.
func (s *Server) produceStream(ctx context.Context, st *stream, id, token []byte, count uint64, rate float64, pad int, stateless bool) {
	var (
		buf     []byte
		err     error
		seq     uint64
		emitted uint64
	)
	if token != nil {
		err = runPaced(ctx, nil, rate, count, func() error {
			seq++
			var sent bool
			buf, sent, err = s.emit(ctx, st, buf, seq, func(dst []byte, seq uint64, sentAt int64) []byte {
				return appendProgress(dst, token, seq, count, sentAt, pad)
			}, &s.stats.progress)
			if sent {
				emitted++
			}
			return err
		})
	} else if rate > 0 && count > 0 {
		// No token: no notifications, but the call takes as long as they would have.
		t := time.NewTimer(pace.Offset(count-1, rate))
		select {
		case <-t.C:
		case <-ctx.Done():
			err = ctx.Err()
		}
		t.Stop()
	}
	if err != nil {
		return // cancelled or the session ended: no result
	}
	res := endResult(appendStreamResult(nil, count, emitted, time.Now().UnixNano()), stateless)
	if st.append(ctx, appendResponse(buf[:0], id, res)) == nil {
		s.stats.resultSSE.Add(1)
	}
	st.finish()
}
