package gateway

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// scriptTransport is a scripted upstream for the tests of one request path each: send decides each
// Send's reply.
type scriptTransport struct {
	version string
	send    func(body []byte) (*upstream.Reply, error)
	mu      sync.Mutex
	closed  int
}

type scriptSession struct{ t *scriptTransport }

func (t *scriptTransport) Connect(_ context.Context, init []byte) (upstream.Session, []byte, error) {
	return &scriptSession{t}, []byte(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"` + t.version + `","capabilities":{},"serverInfo":{"name":"script","version":"1"}}}`), nil
}
func (t *scriptTransport) Close() error { return nil }

func (s *scriptSession) ID() string      { return "up" }
func (s *scriptSession) Version() string { return s.t.version }
func (s *scriptSession) Listen(context.Context) (upstream.Stream, error) {
	return nil, upstream.ErrNotSupported
}
func (s *scriptSession) Close(context.Context) error {
	s.t.mu.Lock()
	s.t.closed++
	s.t.mu.Unlock()
	return nil
}
func (s *scriptSession) Send(_ context.Context, body []byte) (*upstream.Reply, error) {
	return s.t.send(body)
}

func newScriptServer(t *testing.T, tr *scriptTransport, cfg Config) *Server {
	t.Helper()
	cfg.Upstream = tr
	if cfg.DrainWindow == 0 {
		cfg.DrainWindow = -1
	}
	s, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// rvDo runs one request through s.Handler without a network.
func scriptDo(s *Server, method, sid, version, body string, hdr ...[2]string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI("/mcp")
	req.Header.SetHost("127.0.0.1:8080")
	if method == fasthttp.MethodPost {
		req.Header.SetContentType("application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.SetBodyString(body)
	} else {
		req.Header.Set("Accept", "text/event-stream")
	}
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	if version != "" {
		req.Header.Set("MCP-Protocol-Version", version)
	}
	for _, h := range hdr {
		if h[1] == "" {
			req.Header.Del(h[0])
			continue
		}
		req.Header.Add(h[0], h[1])
	}
	ctx := &fasthttp.RequestCtx{}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}, nil)
	s.Handler(ctx)
	return ctx
}

func scriptInit(t *testing.T, s *Server, version string) string {
	t.Helper()
	ctx := scriptDo(s, fasthttp.MethodPost, "", "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+version+`","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	require.Equal(t, 200, ctx.Response.StatusCode(), "%s", ctx.Response.Body())
	sid := string(ctx.Response.Header.Peek("Mcp-Session-Id"))
	require.NotEmpty(t, sid)
	return sid
}

// requestIDs returns the ids of the requests in a body the gateway sent
// upstream (raw JSON, in order).
func requestIDs(t *testing.T, body []byte) []string {
	t.Helper()
	var p jsonrpc.Parser
	msgs, _, perr := p.Parse(body)
	require.Nil(t, perr, "%s", body)
	var ids []string
	for _, m := range msgs {
		if m.Kind == jsonrpc.KindRequest {
			ids = append(ids, string(m.ID))
		}
	}
	return ids
}
