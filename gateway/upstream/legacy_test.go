package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// legacyServer is a scripted HTTP+SSE (2024-11-05) server: GET /sse opens a
// session and announces its endpoint, POST /messages?sessionId=N takes a
// message (202) and the session's peerState answers on the SSE stream.
type legacyServer struct {
	*httptest.Server
	// reuse: a GET gives the newest session's endpoint again (a server
	// whose sessions survive their stream).
	reuse    atomic.Bool
	post404  atomic.Bool
	endpoint atomic.Value // func(id string) string; nil = "/messages?sessionId=<id>"
	gets     atomic.Int32

	mu       sync.Mutex
	sessions map[string]*legacyPeer
	newest   *legacyPeer
}

type legacyPeer struct {
	id     string
	state  peerState
	events chan string
	// mu guards drop, which the current GET watches: closing it ends that
	// stream (a network cut).
	mu   sync.Mutex
	drop chan struct{}
	open atomic.Int32 // GETs being served
}

func newLegacyServer(t *testing.T) *legacyServer {
	ls := &legacyServer{sessions: map[string]*legacyPeer{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sse", ls.serveSSE)
	mux.HandleFunc("POST /messages", ls.servePost)
	mux.HandleFunc("GET /silent", func(w http.ResponseWriter, r *http.Request) { // never announces an endpoint
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	ls.Server = httptest.NewServer(mux)
	t.Cleanup(ls.Close)
	return ls
}

func (ls *legacyServer) sseURL() string { return ls.URL + "/sse" }

func (ls *legacyServer) serveSSE(w http.ResponseWriter, r *http.Request) {
	ls.gets.Add(1)
	ls.mu.Lock()
	p := ls.newest
	if p == nil || !ls.reuse.Load() {
		p = &legacyPeer{id: strconv.Itoa(len(ls.sessions) + 1), events: make(chan string, 256)}
		p.state.write = func(s string) { p.events <- s }
		ls.sessions[p.id] = p
		ls.newest = p
	}
	ls.mu.Unlock()
	drop := make(chan struct{})
	p.mu.Lock()
	p.drop = drop
	p.mu.Unlock()
	p.open.Add(1)
	defer p.open.Add(-1)
	ep := "/messages?sessionId=" + p.id
	if f, ok := ls.endpoint.Load().(func(string) string); ok {
		ep = f(p.id)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprintf(w, "event: endpoint\ndata: %s\n\n", ep)
	w.(http.Flusher).Flush()
	for {
		select {
		case ev := <-p.events:
			fmt.Fprintf(w, "event: message\ndata: %s\n\n", ev)
			w.(http.Flusher).Flush()
		case <-drop:
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (ls *legacyServer) servePost(w http.ResponseWriter, r *http.Request) {
	ls.mu.Lock()
	p := ls.sessions[r.URL.Query().Get("sessionId")]
	ls.mu.Unlock()
	if p == nil || ls.post404.Load() {
		http.Error(w, "unknown session", http.StatusNotFound)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var m peerMsg
	if err := json.Unmarshal(b, &m); err != nil {
		http.Error(w, "bad message", http.StatusBadRequest)
		return
	}
	// The answer may reach the stream before the 202 reaches the client.
	p.state.handle(m)
	w.WriteHeader(http.StatusAccepted)
}

// cut ends every open SSE stream of the newest session.
func (ls *legacyServer) cut() {
	ls.mu.Lock()
	p := ls.newest
	ls.mu.Unlock()
	p.mu.Lock()
	close(p.drop)
	p.mu.Unlock()
}

func newLegacyTransport(t *testing.T, url string, mod func(*LegacySSEConfig)) (*LegacySSE, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	cfg := LegacySSEConfig{
		URL:     url,
		Timeout: 5 * time.Second,
		Logger:  slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	tr, err := NewLegacySSE(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = tr.Close()
		if t.Failed() {
			t.Logf("transport log:\n%s", logs.String())
		}
	})
	return tr, logs
}

func TestParseEndpoint(t *testing.T) {
	base, _ := url.Parse("http://example.com:8080/mcp/sse?x=1")
	for _, tc := range []struct {
		in, want string // want "": an error
	}{
		{"/messages?sessionId=abc", "http://example.com:8080/messages?sessionId=abc"},
		{"messages?sessionId=abc", "http://example.com:8080/mcp/messages?sessionId=abc"},
		{"  /m?s=1\r\n", "http://example.com:8080/m?s=1"},
		{"http://EXAMPLE.com:8080/m", "http://EXAMPLE.com:8080/m"},
		{"/m#frag", "http://example.com:8080/m"},
		{"?sessionid=9", "http://example.com:8080/mcp/sse?sessionid=9"},
		{"http://evil.example/m", ""},
		{"//evil.example/m", ""},
		{"https://example.com:8080/m", ""},
		{"http://example.com/m", ""}, // another port
		{"http://user@example.com:8080/m", ""},
		{"", ""},
		{"   ", ""},
		{"/m\x00", ""},
		{"/m\x7f", ""},
		{"%zz", ""},
		{"/" + strings.Repeat("a", maxEndpointLen), ""},
	} {
		u, err := parseEndpoint(base, []byte(tc.in))
		if tc.want == "" {
			assert.Error(t, err, "%q", tc.in)
			continue
		}
		if assert.NoError(t, err, "%q", tc.in) {
			assert.Equal(t, tc.want, u.String(), "%q", tc.in)
		}
	}
	// User information of the SSE URL (the operator's, sent as Basic
	// authentication) goes on to the endpoint; the endpoint cannot name
	// other.
	base, _ = url.Parse("http://u:p@example.com:8080/sse")
	for in, want := range map[string]string{
		"/messages?s=1":                 "http://u:p@example.com:8080/messages?s=1",
		"http://u:p@example.com:8080/m": "http://u:p@example.com:8080/m",
		"http://x@example.com:8080/m":   "",
		"http://example.com:8080/m":     "http://example.com:8080/m",
	} {
		u, err := parseEndpoint(base, []byte(in))
		if want == "" {
			assert.Error(t, err, "%q", in)
		} else if assert.NoError(t, err, "%q", in) {
			assert.Equal(t, want, u.String(), "%q", in)
		}
	}
	// Default ports count as the same origin.
	base, _ = url.Parse("https://example.com/sse")
	u, err := parseEndpoint(base, []byte("https://example.com:443/m"))
	require.NoError(t, err)
	assert.Equal(t, "https://example.com:443/m", u.String())
}

func connectLegacy(t *testing.T, tr *LegacySSE) Session {
	t.Helper()
	s, answer, err := tr.Connect(context.Background(), []byte(peerInit))
	require.NoError(t, err)
	require.NotNil(t, s, "answer: %s", answer)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"peer","version":"1"}}}`, string(answer))
	assert.Equal(t, "2025-06-18", s.Version())
	return s
}

func TestLegacySSECalls(t *testing.T) {
	ls := newLegacyServer(t)
	tr, _ := newLegacyTransport(t, ls.sseURL(), nil)
	s := connectLegacy(t, tr)
	assert.Equal(t, "1", s.ID(), "the endpoint's session parameter")

	msgs, err := drain(t, sendCall(t, s, toolCall(1, "progress", "", `"tok"`)))
	require.ErrorIs(t, err, io.EOF)
	require.Len(t, msgs, 5)
	assert.Contains(t, msgs[0], `"progressToken":"tok"`)
	assert.Contains(t, msgs[3], `notifications/message`)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"done"}]}}`, msgs[4])

	// A server request answered by the client.
	st := sendCall(t, s, toolCall(2, "sample", "", ""))
	req, err := next(t, st)
	require.NoError(t, err)
	assert.Contains(t, req, "sampling/createMessage")
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":"s1","result":{"text":"ok"}}`))
	require.NoError(t, err)
	assert.True(t, r.Accepted)
	answer, err := next(t, st)
	require.NoError(t, err)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":2,"result":{"sampled":{"text":"ok"}}}`, answer)

	// The server's ping is answered by the transport.
	msgs, err = drain(t, sendCall(t, s, toolCall(3, "ping", "", "")))
	require.ErrorIs(t, err, io.EOF)
	assert.Equal(t, []string{`{"jsonrpc":"2.0","id":3,"result":{"pong":{}}}`}, msgs)

	// Session-wide notifications go to the standalone stream.
	_, err = drain(t, sendCall(t, s, toolCall(4, "listchanged", "", "")))
	require.ErrorIs(t, err, io.EOF)
	l, err := s.Listen(context.Background())
	require.NoError(t, err)
	defer l.Close()
	m, err := next(t, l)
	require.NoError(t, err)
	assert.Contains(t, m, "tools/list_changed")

	// A batch is split into POSTs.
	msgs, err = drain(t, sendCall(t, s, `[{"jsonrpc":"2.0","id":5,"method":"tools/list"},{"jsonrpc":"2.0","id":6,"method":"prompts/list"}]`))
	require.ErrorIs(t, err, io.EOF)
	assert.ElementsMatch(t, []string{`{"jsonrpc":"2.0","id":5,"result":{}}`, `{"jsonrpc":"2.0","id":6,"result":{}}`}, msgs)

	require.NoError(t, s.Close(context.Background()))
	require.Eventually(t, func() bool { return ls.newest.open.Load() == 0 }, 5*time.Second, 5*time.Millisecond,
		"Close closes the SSE stream (the upstream session ends)")
	_, err = s.Send(context.Background(), []byte(toolCall(7, "x", "", "")))
	assert.ErrorIs(t, err, ErrSessionGone)
}

// TestLegacySSEAbort: Abort closes the SSE stream (the upstream session
// ends) without waiting for the reader; Close afterwards is harmless.
func TestLegacySSEAbort(t *testing.T) {
	ls := newLegacyServer(t)
	tr, _ := newLegacyTransport(t, ls.sseURL(), nil)
	s := connectLegacy(t, tr)
	require.Implements(t, (*Aborter)(nil), s)
	s.(Aborter).Abort()
	require.Eventually(t, func() bool { return ls.newest.open.Load() == 0 }, 5*time.Second, 5*time.Millisecond,
		"Abort closes the SSE stream")
	_, err := s.Send(context.Background(), []byte(toolCall(1, "x", "", "")))
	assert.ErrorIs(t, err, ErrSessionGone)
	s.(Aborter).Abort()
	require.NoError(t, s.Close(context.Background()))
	assert.Zero(t, tr.Stats().SessionsLost, "the gateway ended it")
}

func TestLegacySSEPost404EndsSession(t *testing.T) {
	ls := newLegacyServer(t)
	tr, _ := newLegacyTransport(t, ls.sseURL(), nil)
	s := connectLegacy(t, tr)
	hold := sendCall(t, s, toolCall(1, "hold", "", ""))
	ls.post404.Store(true)
	_, err := s.Send(context.Background(), []byte(toolCall(2, "x", "", "")))
	require.ErrorIs(t, err, ErrSessionGone)
	_, err = next(t, hold)
	require.ErrorIs(t, err, ErrSessionGone, "calls in flight end")
	_, err = s.Send(context.Background(), []byte(toolCall(3, "x", "", "")))
	require.ErrorIs(t, err, ErrSessionGone)
	assert.Equal(t, uint64(1), tr.Stats().SessionsLost)
}

// TestLegacySSEReconnect: a dropped stream is re-opened; the session goes
// on only if the upstream gives the same endpoint back.
func TestLegacySSEReconnect(t *testing.T) {
	t.Run("same session", func(t *testing.T) {
		ls := newLegacyServer(t)
		ls.reuse.Store(true)
		tr, logs := newLegacyTransport(t, ls.sseURL(), nil)
		s := connectLegacy(t, tr)
		hold := sendCall(t, s, toolCall(1, "hold", "", ""))
		ls.cut()
		require.Eventually(t, func() bool { return tr.Stats().Reconnects == 1 }, 10*time.Second, 5*time.Millisecond)
		// A call in flight during the cut is answered on the new stream.
		msgs, err := drain(t, sendCall(t, s, toolCall(2, "release", "", "")))
		require.ErrorIs(t, err, io.EOF)
		assert.Len(t, msgs, 2)
		m, err := next(t, hold)
		require.NoError(t, err)
		assert.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{"held":true}}`, m)
		assert.NotEmpty(t, logs.records("re-established"))
		assert.Equal(t, int32(2), ls.gets.Load())
	})
	t.Run("new session", func(t *testing.T) {
		ls := newLegacyServer(t)
		tr, _ := newLegacyTransport(t, ls.sseURL(), nil)
		s := connectLegacy(t, tr)
		hold := sendCall(t, s, toolCall(1, "hold", "", ""))
		ls.cut()
		_, err := next(t, hold)
		require.ErrorIs(t, err, ErrSessionGone)
		_, err = s.Send(context.Background(), []byte(toolCall(2, "x", "", "")))
		require.ErrorIs(t, err, ErrSessionGone)
		require.Eventually(t, func() bool {
			ls.mu.Lock()
			defer ls.mu.Unlock()
			return ls.sessions["2"] != nil && ls.sessions["2"].open.Load() == 0
		}, 5*time.Second, 5*time.Millisecond, "the new upstream session's stream is closed at once")
		assert.Equal(t, uint64(1), tr.Stats().SessionsLost)
	})
	t.Run("upstream down", func(t *testing.T) {
		ls := newLegacyServer(t)
		tr, logs := newLegacyTransport(t, ls.sseURL(), func(c *LegacySSEConfig) { c.ReconnectAttempts = 2 })
		s := connectLegacy(t, tr)
		l, err := s.Listen(context.Background())
		require.NoError(t, err)
		defer l.Close()
		ls.CloseClientConnections()
		ls.Config.SetKeepAlivesEnabled(false)
		ls.Listener.Close()
		_, err = next(t, l)
		require.ErrorIs(t, err, ErrSessionGone)
		assert.NotEmpty(t, logs.records("session lost"))
	})
}

func TestLegacySSEConnectErrors(t *testing.T) {
	ls := newLegacyServer(t)
	for _, tc := range []struct {
		name     string
		url      string
		endpoint func(string) string
		timeout  time.Duration
		check    func(t *testing.T, err error)
	}{
		{"SSE URL not found", ls.URL + "/nope", nil, 0, func(t *testing.T, err error) {
			var se *StatusError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, http.StatusNotFound, se.Status)
		}},
		{"empty endpoint", ls.sseURL(), func(string) string { return "" }, 0, func(t *testing.T, err error) {
			require.ErrorIs(t, err, ErrUnavailable)
		}},
		{"endpoint on another origin", ls.sseURL(), func(string) string { return "http://evil.example/m" }, 0, func(t *testing.T, err error) {
			require.ErrorIs(t, err, ErrUnavailable)
			assert.Contains(t, err.Error(), "origin")
		}},
		{"no endpoint in time", ls.URL + "/silent", nil, 300 * time.Millisecond, func(t *testing.T, err error) {
			require.ErrorIs(t, err, ErrTimeout)
		}},
		{"nothing listening", "http://" + freeAddr(t) + "/sse", nil, 0, func(t *testing.T, err error) {
			require.ErrorIs(t, err, ErrUnavailable)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.endpoint != nil {
				ls.endpoint.Store(tc.endpoint)
				defer ls.endpoint.Store(func(id string) string { return "/messages?sessionId=" + id })
			}
			tr, _ := newLegacyTransport(t, tc.url, func(c *LegacySSEConfig) {
				if tc.timeout > 0 {
					c.Timeout = tc.timeout
				}
			})
			s, _, err := tr.Connect(context.Background(), []byte(peerInit))
			assert.Nil(t, s)
			tc.check(t, err)
		})
	}
}

func freeAddr(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close()
	return addr
}

func TestLegacySSEEventTooLarge(t *testing.T) {
	ls := newLegacyServer(t)
	tr, logs := newLegacyTransport(t, ls.sseURL(), func(c *LegacySSEConfig) { c.MaxMessageBytes = 4096 })
	s := connectLegacy(t, tr)
	r, err := s.Send(context.Background(), []byte(toolCall(1, "big", `{"n":10000}`, "")))
	if err == nil { // else the event arrived before the POST's 202
		_, err = drain(t, r.Stream)
	}
	require.ErrorIs(t, err, ErrTooLarge)
	assert.Equal(t, uint64(1), tr.Stats().MessagesTooLong)
	assert.NotEmpty(t, logs.records("larger than the limit"))
}

// TestLegacySSEAgainstGoSDK runs the transport against the official Go
// SDK's HTTP+SSE server: a tool that reports progress, logs and asks the
// client for a sampling answer.
func TestLegacySSEAgainstGoSDK(t *testing.T) {
	server := mcp.NewServer(&mcp.Implementation{Name: "sdk", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "work"}, func(ctx context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: 1, Total: 2})
		res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{MaxTokens: 5, Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "hi"}}}})
		if err != nil {
			return nil, nil, err
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "sampled: " + res.Content.(*mcp.TextContent).Text}}}, nil, nil
	})
	srv := httptest.NewServer(mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return server }, nil))
	defer srv.Close()

	tr, _ := newLegacyTransport(t, srv.URL+"/sse", nil)
	s, answer, err := tr.Connect(context.Background(), []byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"t","version":"1"}}}`))
	require.NoError(t, err)
	require.NotNil(t, s, "%s", answer)
	assert.Equal(t, "2025-06-18", s.Version())
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	require.NoError(t, err)
	assert.True(t, r.Accepted)

	st := sendCall(t, s, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"work","arguments":{},"_meta":{"progressToken":"p"}}}`)
	m, err := next(t, st)
	require.NoError(t, err)
	assert.Contains(t, m, `"progressToken":"p"`)
	m, err = next(t, st)
	require.NoError(t, err)
	require.Contains(t, m, "sampling/createMessage")
	var req struct{ ID json.RawMessage }
	require.NoError(t, json.Unmarshal([]byte(m), &req))
	r, err = s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":`+string(req.ID)+`,"result":{"role":"assistant","model":"m","content":{"type":"text","text":"hello"}}}`))
	require.NoError(t, err)
	assert.True(t, r.Accepted)
	m, err = next(t, st)
	require.NoError(t, err)
	assert.Contains(t, m, "sampled: hello")
	assert.Contains(t, m, `"id":1`)
	_, err = next(t, st)
	assert.ErrorIs(t, err, io.EOF)
	require.NoError(t, s.Close(context.Background()))
}

func TestNewLegacySSEValidates(t *testing.T) {
	for _, u := range []string{"", "ftp://x/sse", "http://", "::"} {
		_, err := NewLegacySSE(LegacySSEConfig{URL: u})
		assert.Error(t, err, u)
	}
	_, err := NewLegacySSE(LegacySSEConfig{URL: "http://x/sse", Timeout: -1})
	assert.Error(t, err)
}
