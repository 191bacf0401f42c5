//go:build !race

package gateway

import (
	"context"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// echoTransport is an upstream that answers every request at once, with
// JSON or with a one-event stream, building each answer in buffers it
// reuses: it allocates nothing per call itself, so an allocation count of
// the handler path is the gateway's alone. Single-threaded use only.
type echoTransport struct {
	answer answerKind
	sess   echoSession
	reply  upstream.Reply
}

// answerKind is how echoTransport answers a request.
type answerKind int

const (
	answerJSON    answerKind = iota
	answerSSE                // a one-event stream that arrived whole: relayed by the handler (relayBuffered)
	answerSSEPump            // a one-event stream the transport cannot see into: relayed by a pump
)

type echoSession struct {
	t        *echoTransport
	answer   []byte
	stream   echoStream
	buffered echoBuffered
}

// echoStream yields one message, then io.EOF. closed is set by Close,
// which a pump calls from its own goroutine after draining the stream.
type echoStream struct {
	msg    []byte
	done   bool
	closed atomic.Bool
}

func (e *echoStream) Next() ([]byte, error) {
	if e.done {
		return nil, io.EOF
	}
	e.done = true
	return e.msg, nil
}
func (e *echoStream) Close() error { e.closed.Store(true); return nil }

// echoBuffered is an echoStream that arrived with its headers
// (upstream.Buffered), as the HTTP transport reports most SSE answers.
type echoBuffered struct{ echoStream }

func (e *echoBuffered) Buffered() (int, int) {
	if e.done {
		return 0, 0
	}
	return len(e.msg), 1
}

func (e *echoBuffered) NextBuffered() ([]byte, error) {
	if e.done {
		return nil, upstream.ErrNotBuffered
	}
	return e.Next()
}

func (e *echoBuffered) RestArrived() bool                { return true }
func (e *echoBuffered) OweEnd() bool                     { return false }
func (e *echoBuffered) AwaitBuffered(time.Duration) bool { return !e.done }

func (t *echoTransport) Connect(context.Context, []byte) (upstream.Session, []byte, error) {
	t.sess.t = t
	return &t.sess, []byte(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"echo","version":"1"}}}`), nil
}
func (t *echoTransport) Close() error { return nil }

func (s *echoSession) ID() string      { return "up" }
func (s *echoSession) Version() string { return "2025-11-25" }
func (s *echoSession) Listen(context.Context) (upstream.Stream, error) {
	return nil, upstream.ErrNotSupported
}
func (s *echoSession) Close(context.Context) error { return nil }

func (s *echoSession) Send(_ context.Context, body []byte) (*upstream.Reply, error) {
	id, ok := jsonrpc.Lookup(body, "id")
	if !ok {
		s.t.reply = upstream.Reply{Accepted: true}
		return &s.t.reply, nil
	}
	s.answer = append(append(append(s.answer[:0], `{"jsonrpc":"2.0","id":`...), id...), `,"result":{"content":[{"type":"text","text":"hi"}]}}`...)
	switch s.t.answer {
	case answerSSE:
		s.buffered = echoBuffered{echoStream{msg: s.answer}}
		s.t.reply = upstream.Reply{Stream: &s.buffered}
	case answerSSEPump:
		// The previous call's pump may still be draining its stream after
		// the client got the answer (pumpAnswer's upstream.Drain): reusing
		// the stream before its Close would hand that pump this call's
		// message.
		for s.stream.msg != nil && !s.stream.closed.Load() {
			runtime.Gosched()
		}
		s.stream.msg, s.stream.done = s.answer, false
		s.stream.closed.Store(false)
		s.t.reply = upstream.Reply{Stream: &s.stream}
	default:
		s.t.reply = upstream.Reply{JSON: s.answer}
	}
	return &s.t.reply, nil
}

// callPath runs one tools/call through s.Handler on a reused RequestCtx
// and checks the answer.
type callPath struct {
	s   *Server
	ctx fasthttp.RequestCtx
	sid string
	id  int
	buf []byte
}

func newCallPath(t testing.TB, answer answerKind) *callPath {
	tr := &echoTransport{answer: answer}
	cfg := Config{Upstream: tr, DrainWindow: -1, StreamRetention: 1}
	s, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	c := &callPath{s: s}
	c.ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	c.post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	c.sid = string(c.ctx.Response.Header.Peek("Mcp-Session-Id"))
	require.NotEmpty(t, c.sid, "%s", c.ctx.Response.Body())
	return c
}

func (c *callPath) post(body string) {
	c.buf = append(c.buf[:0], body...)
	c.do()
}

func (c *callPath) do() {
	req := &c.ctx.Request
	c.ctx.Response.Reset()
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI("/mcp")
	req.Header.SetHost("127.0.0.1:8080")
	req.Header.SetContentType("application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.sid != "" {
		req.Header.Set("Mcp-Session-Id", c.sid)
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	}
	req.SetBodyRaw(c.buf)
	c.s.Handler(&c.ctx)
}

// call sends one tools/call and returns the answer's status and body.
func (c *callPath) call() (int, []byte) {
	c.id++
	c.buf = append(strconv.AppendInt(append(c.buf[:0], `{"jsonrpc":"2.0","id":`...), int64(c.id), 10),
		`,"method":"tools/call","params":{"name":"echo","arguments":{}}}`...)
	c.do()
	return c.ctx.Response.StatusCode(), c.ctx.Response.Body()
}

// callPathCases are the answers TestCallPathAllocs and BenchmarkCallPath
// run, with each one's allocation budget per call.
var callPathCases = []struct {
	name   string
	answer answerKind
	budget float64
}{
	// Before the one-call POST became one allocation, the priming event
	// went on the stack, the pending calls into the POST's own slice and
	// the ring's wake-up channel was made on first use: 6, 11 and 13.
	{"json", answerJSON, 4},
	{"sse", answerSSE, 7},
	{"sse-pump", answerSSEPump, 10},
}

// TestCallPathAllocs: the allocation budgets of one tools/call through the
// handler, answered by the upstream with JSON and with a one-event SSE
// stream (which the gateway answers whole: wholeanswer.go), relayed by the
// request's goroutine (most answers) or by a pump. The SSE answer's stream,
// ring and call bookkeeping (and the pump goroutine) are what it costs over
// the JSON answer; a change that adds to either path shows here.
func TestCallPathAllocs(t *testing.T) {
	for _, c := range callPathCases {
		t.Run(c.name, func(t *testing.T) {
			p := newCallPath(t, c.answer)
			for i := 0; i < 200; i++ {
				code, body := p.call()
				require.Equal(t, fasthttp.StatusOK, code, "%s", body)
				require.Contains(t, string(body), `"text":"hi"`)
			}
			allocs := testing.AllocsPerRun(500, func() { p.call() })
			t.Logf("%s: %.1f allocations per call", c.name, allocs)
			require.LessOrEqual(t, allocs, c.budget, "allocations per tools/call answered with %s", c.name)
		})
	}
}

func BenchmarkCallPath(b *testing.B) {
	for _, c := range callPathCases {
		b.Run(c.name, func(b *testing.B) {
			p := newCallPath(b, c.answer)
			b.ReportAllocs()
			for b.Loop() {
				p.call()
			}
		})
	}
}
