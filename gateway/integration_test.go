//go:build integration

package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// stack is a reference MCP server with the gateway binary in front of it.
type stack struct {
	up, gw *testenv.Proc
}

func startStack(t *testing.T, flags ...string) stack {
	t.Helper()
	up := testenv.StartEverything(t, testenv.Env(t, "MCPGATE_EVERYTHING_SERVER"), true)
	gw := testenv.StartGateway(t, testenv.Env(t, "MCPGATE_GATEWAY_BIN"), up.URL, flags...)
	return stack{up: up, gw: gw}
}

func connect(t *testing.T, url string, opts *mcp.ClientOptions, noGET bool) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-test", Version: "1.0.0"}, opts)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, DisableStandaloneSSE: noGET}, nil)
	require.NoError(t, err)
	return cs
}

func textOf(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	require.NotEmpty(t, res.Content)
	tc, ok := res.Content[0].(*mcp.TextContent)
	require.True(t, ok, "first content is %T", res.Content[0])
	return tc.Text
}

// rawPost sends one POST to the gateway and returns status and body.
func rawPost(t *testing.T, url, sid, body string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestSDKCallsThroughGateway(t *testing.T) {
	s := startStack(t)
	cs := connect(t, s.gw.URL, nil, false)
	ctx := context.Background()

	tools, err := cs.ListTools(ctx, nil)
	require.NoError(t, err)
	assert.Greater(t, len(tools.Tools), 10)

	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
	require.NoError(t, err)
	assert.Contains(t, textOf(t, res), "simple text")
	assert.Equal(t, "2025-11-25", cs.InitializeResult().ProtocolVersion)

	// The gateway's session id, never the upstream's: 32 hex characters.
	sid := cs.ID()
	assert.Regexp(t, `^[0-9a-f]{32}$`, sid)

	// Close sends DELETE; the id is dead afterwards.
	require.NoError(t, cs.Close())
	status, body := rawPost(t, s.gw.URL, sid, `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`, nil)
	assert.Equal(t, http.StatusNotFound, status, "%s", body)
	assert.Contains(t, string(body), `"code":-32001`)
}

func TestSDKStreamedAnswerWithProgress(t *testing.T) {
	s := startStack(t)
	var progress atomic.Int32
	cs := connect(t, s.gw.URL, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			if r.Params.ProgressToken == "tok-1" {
				progress.Add(1)
			}
		},
	}, false)
	defer cs.Close()
	params := &mcp.CallToolParams{Name: "test_tool_with_progress"}
	params.SetProgressToken("tok-1")
	res, err := cs.CallTool(context.Background(), params)
	require.NoError(t, err)
	assert.False(t, res.IsError)
	// Notification handlers may still run when the call returns.
	assert.Eventually(t, func() bool { return progress.Load() == 3 }, 5*time.Second, 10*time.Millisecond,
		"every progress notification of the call arrives: %d", progress.Load())

	var logs atomic.Int32
	cs2 := connect(t, s.gw.URL, &mcp.ClientOptions{
		LoggingMessageHandler: func(context.Context, *mcp.LoggingMessageRequest) { logs.Add(1) },
	}, false)
	defer cs2.Close()
	require.NoError(t, cs2.SetLoggingLevel(context.Background(), &mcp.SetLoggingLevelParams{Level: "debug"}))
	_, err = cs2.CallTool(context.Background(), &mcp.CallToolParams{Name: "test_tool_with_logging"})
	require.NoError(t, err)
	assert.Eventually(t, func() bool { return logs.Load() >= 3 }, 5*time.Second, 10*time.Millisecond, "log notifications: %d", logs.Load())
}

func TestSDKStandaloneStreamAndIsolation(t *testing.T) {
	// A relay between the gateway and the upstream shows when the gateway's
	// upstream standalone streams are open.
	up := testenv.StartEverything(t, testenv.Env(t, "MCPGATE_EVERYTHING_SERVER"), true)
	upRelay := testenv.StartRelay(t, hostPort(t, up.URL))
	gw := testenv.StartGateway(t, testenv.Env(t, "MCPGATE_GATEWAY_BIN"), "http://"+upRelay.Addr()+"/mcp")
	s := stack{up: up, gw: gw}
	ctx := context.Background()

	var aTools, bTools atomic.Int32
	var aUpdates, bUpdates atomic.Int32
	a := connect(t, s.gw.URL, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { aTools.Add(1) },
		ResourceUpdatedHandler: func(context.Context, *mcp.ResourceUpdatedNotificationRequest) { aUpdates.Add(1) },
	}, false)
	defer a.Close()
	b := connect(t, s.gw.URL, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { bTools.Add(1) },
		ResourceUpdatedHandler: func(context.Context, *mcp.ResourceUpdatedNotificationRequest) { bUpdates.Add(1) },
	}, false)
	defer b.Close()

	// Only a subscribes to the watched resource (the server updates it every 3 s).
	require.NoError(t, a.Subscribe(ctx, &mcp.SubscribeParams{URI: "test://watched-resource"}))
	// A tool change is announced to every session on its standalone stream,
	// once both sessions' standalone streams are open up to the upstream.
	require.True(t, upRelay.WaitFor(nil, 10*time.Second, func(live map[testenv.ConnKind]int) bool {
		return live[testenv.ConnStandalone] >= 2
	}), "both upstream standalone streams open: %v", upRelay.Live())
	_, err := b.CallTool(ctx, &mcp.CallToolParams{Name: "test_trigger_tool_change"})
	require.NoError(t, err)

	require.Eventually(t, func() bool { return aTools.Load() >= 1 && bTools.Load() >= 1 }, 10*time.Second, 20*time.Millisecond,
		"list_changed on both standalone streams")
	require.Eventually(t, func() bool { return aUpdates.Load() >= 1 }, 10*time.Second, 50*time.Millisecond,
		"resources/updated on the subscriber's standalone stream")
	assert.Zero(t, bUpdates.Load(), "the other session never sees a's subscription")

	// Concurrent calls with the same request ids and progress tokens in two
	// sessions never cross.
	var wg sync.WaitGroup
	for i, cs := range []*mcp.ClientSession{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
				if !assert.NoError(t, err, "client %d call %d", i, j) {
					return
				}
				assert.Contains(t, textOf(t, res), "simple text")
			}
		}()
	}
	wg.Wait()
}

func TestSDKIdleExpiry(t *testing.T) {
	s := startStack(t, "-session-idle-timeout", "1s")
	cs := connect(t, s.gw.URL, nil, true)
	_, err := cs.ListTools(context.Background(), nil)
	require.NoError(t, err)
	sid := cs.ID()
	// Any request would keep the session alive: wait for the sweeper.
	waitMetric(t, s.gw, 10*time.Second, "the session expired", func(m map[string]float64) bool {
		return m[`mcpgate_sessions_closed_total{reason="idle"}`] >= 1
	})
	status, body := rawPost(t, s.gw.URL, sid, `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`, map[string]string{"MCP-Protocol-Version": "2025-11-25"})
	assert.Equal(t, http.StatusNotFound, status, "%s", body)
	_, err = cs.ListTools(context.Background(), nil)
	require.Error(t, err)
	_ = cs.Close()
}

func TestSDKUpstreamRestartIsSessionLoss(t *testing.T) {
	s := startStack(t)
	cs := connect(t, s.gw.URL, nil, true)
	_, err := cs.ListTools(context.Background(), nil)
	require.NoError(t, err)

	// Restart the upstream on the same address: its sessions are gone.
	addr := strings.TrimSuffix(strings.TrimPrefix(s.up.URL, "http://"), "/mcp")
	_ = s.up.Stop(5 * time.Second) // the reference server dies on SIGTERM: exit status ignored
	restartEverythingAt(t, addr)

	_, err = cs.ListTools(context.Background(), nil)
	require.Error(t, err)
	assert.True(t, errors.Is(err, mcp.ErrSessionMissing), "want ErrSessionMissing, got %v", err)
	status, _ := rawPost(t, s.gw.URL, cs.ID(), `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`, nil)
	assert.Equal(t, http.StatusNotFound, status)

	// A new session works against the restarted upstream.
	cs2 := connect(t, s.gw.URL, nil, true)
	defer cs2.Close()
	_, err = cs2.ListTools(context.Background(), nil)
	require.NoError(t, err)
}

// restartEverythingAt starts the reference server again on addr, which its
// previous process (stopped and waited for) no longer holds. StartEverythingAt
// waits until it listens; a few attempts cover a port another process took
// meanwhile.
func restartEverythingAt(t *testing.T, addr string) {
	t.Helper()
	bin := testenv.Env(t, "MCPGATE_EVERYTHING_SERVER")
	for attempt := 0; attempt < 3; attempt++ {
		if testenv.StartEverythingAt(t, bin, addr, true) != nil {
			return
		}
	}
	t.Fatalf("could not restart everything-server on %s", addr)
}

// TestBadRequests checks every rejection's status and JSON-RPC error, and
// that an existing session is untouched afterwards.
func TestBadRequests(t *testing.T) {
	s := startStack(t, "-max-body", "64KiB")
	cs := connect(t, s.gw.URL, nil, true)
	defer cs.Close()
	sid := cs.ID()
	ctx := context.Background()
	_, err := cs.ListTools(ctx, nil)
	require.NoError(t, err)

	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	type tc struct {
		name   string
		method string
		body   string
		sid    string
		hdr    map[string]string
		status int
		code   int // 0: no body check
	}
	cases := []tc{
		{"no Accept", "POST", list, sid, map[string]string{"Accept": ""}, 406, -32000},
		{"Accept json only", "POST", list, sid, map[string]string{"Accept": "application/json"}, 406, -32000},
		{"wrong Content-Type", "POST", list, sid, map[string]string{"Content-Type": "text/plain"}, 415, -32000},
		{"invalid JSON", "POST", `{"jsonrpc":`, sid, nil, 400, -32700},
		{"not a message", "POST", `[1,2]`, sid, nil, 400, -32600},
		{"JSON scalar", "POST", `"hello"`, sid, nil, 400, -32600},
		{"empty body", "POST", ``, sid, nil, 400, -32000},
		{"missing session id", "POST", list, "", nil, 400, -32000},
		{"unknown session id", "POST", list, "0123456789abcdef0123456789abcdef", nil, 404, -32001},
		{"session id with a space", "POST", list, "abc def", nil, 400, -32000},
		{"unsupported version", "POST", list, sid, map[string]string{"MCP-Protocol-Version": "1999-01-01"}, 400, -32022},
		{"batch on 2025-11-25", "POST", `[` + list + `]`, sid, nil, 400, -32600},
		{"initialize with session id", "POST", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`, sid, nil, 400, -32600},
		{"Last-Event-ID on POST", "POST", list, sid, map[string]string{"Last-Event-ID": "1_1"}, 400, -32000},
		{"PUT", "PUT", list, sid, nil, 405, -32000},
		{"PATCH", "PATCH", list, sid, nil, 405, -32000},
		{"bad Origin", "POST", list, sid, map[string]string{"Origin": "http://evil.example.com"}, 403, -32000},
		{"bad Host", "POST", list, sid, map[string]string{"Host": "evil.example.com"}, 403, -32000},
		{"GET without SSE Accept", "GET", "", sid, map[string]string{"Accept": "application/json"}, 406, -32000},
		{"GET without session", "GET", "", "", nil, 400, -32000},
		{"GET malformed Last-Event-ID", "GET", "", sid, map[string]string{"Last-Event-ID": "x_1"}, 400, -32000},
		{"GET Last-Event-ID of unknown stream", "GET", "", sid, map[string]string{"Last-Event-ID": "99_1"}, 400, -32000},
		{"DELETE without session", "DELETE", "", "", nil, 400, -32000},
		{"DELETE unknown session", "DELETE", "", "0123456789abcdef0123456789abcdef", nil, 404, -32001},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, s.gw.URL, bytes.NewBufferString(c.body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			if c.method == "GET" {
				req.Header.Set("Accept", "text/event-stream")
			} else {
				req.Header.Set("Accept", "application/json, text/event-stream")
			}
			if c.sid != "" {
				req.Header.Set("Mcp-Session-Id", c.sid)
			}
			for k, v := range c.hdr {
				switch {
				case k == "Host":
					req.Host = v
				case v == "":
					req.Header.Del(k)
				default:
					req.Header.Set(k, v)
				}
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			assert.Equal(t, c.status, resp.StatusCode, "body: %s", body)
			if c.code != 0 {
				var msg struct {
					JSONRPC string `json:"jsonrpc"`
					Error   struct {
						Code    int    `json:"code"`
						Message string `json:"message"`
					} `json:"error"`
				}
				require.NoError(t, json.Unmarshal(body, &msg), "body: %s", body)
				assert.Equal(t, "2.0", msg.JSONRPC)
				assert.Equal(t, c.code, msg.Error.Code, "body: %s", body)
				assert.NotEmpty(t, msg.Error.Message)
			}
		})
	}
	// An oversized body is refused from its Content-Length, before it is
	// read: a raw request, since a client still writing the body may see
	// the closed connection before the answer.
	t.Run("oversized body", func(t *testing.T) {
		c, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(s.gw.URL, "http://"), "/mcp"))
		require.NoError(t, err)
		defer c.Close()
		fmt.Fprintf(c, "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"+
			"Accept: application/json, text/event-stream\r\nMcp-Session-Id: %s\r\nContent-Length: %d\r\n\r\n", sid, 70<<10)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
		assert.Contains(t, string(body), `"code":-32000`)
	})

	// The session survived every rejection.
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
	require.NoError(t, err)
	assert.Contains(t, textOf(t, res), "simple text")
}

// TestShutdownIsOrderly: SIGTERM ends attached streams with a retry hint,
// deletes upstream sessions and exits 0 within the timeout.
func TestShutdownIsOrderly(t *testing.T) {
	s := startStack(t, "-shutdown-timeout", "5s")
	cs := connect(t, s.gw.URL, nil, false)
	_, err := cs.ListTools(context.Background(), nil)
	require.NoError(t, err)

	req, _ := http.NewRequest(http.MethodGet, s.gw.URL, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", cs.ID())
	// The SDK client already holds the standalone stream: a second GET
	// takes it over (the newest connection of a session wins) ...
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp.Body.Close()

	// ... and a second session opened by hand holds its standalone stream.
	status, body := rawPost(t, s.gw.URL, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	require.Equal(t, http.StatusOK, status, "%s", body)
	sid2 := sessionFromInit(t, s.gw.URL)
	req2, _ := http.NewRequest(http.MethodGet, s.gw.URL, nil)
	req2.Header.Set("Accept", "text/event-stream")
	req2.Header.Set("Mcp-Session-Id", sid2)
	resp2, err := http.DefaultClient.Do(req2)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp2.StatusCode)
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(resp2.Body)
		got <- string(b)
	}()

	start := time.Now()
	require.NoError(t, s.gw.Signal(syscall.SIGTERM))
	err, exited := s.gw.Wait(10 * time.Second)
	require.True(t, exited, "gateway did not exit")
	assert.NoError(t, err, "exit status")
	assert.Less(t, time.Since(start), 6*time.Second)
	select {
	case b := <-got:
		assert.Contains(t, b, ": ok")
		assert.Contains(t, b, "retry: ", "streams end with a retry hint")
	case <-time.After(5 * time.Second):
		t.Fatal("standalone stream did not end on shutdown")
	}
	assert.Contains(t, s.gw.Stderr(), "stopped")
	_ = cs.Close()
}

// sessionFromInit initializes a raw session and returns its id.
func sessionFromInit(t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	sid := resp.Header.Get("Mcp-Session-Id")
	require.NotEmpty(t, sid)
	st, b := rawPost(t, url, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, map[string]string{"MCP-Protocol-Version": "2025-06-18"})
	require.Equal(t, http.StatusAccepted, st, fmt.Sprintf("%s", b))
	return sid
}

// TestBatchOn20250326: a session that negotiated 2025-03-26 may batch; the
// batch is forwarded as is and every request is answered.
func TestBatchOn20250326(t *testing.T) {
	s := startStack(t)
	req, _ := http.NewRequest(http.MethodPost, s.gw.URL, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), `"protocolVersion":"2025-03-26"`)
	sid := resp.Header.Get("Mcp-Session-Id")
	st, b := rawPost(t, s.gw.URL, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil)
	require.Equal(t, http.StatusAccepted, st, "%s", b)

	st, b = rawPost(t, s.gw.URL, sid, `[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":"b","method":"tools/list"}]`, nil)
	require.Equal(t, http.StatusOK, st, "%s", b)
	assert.Contains(t, string(b), `"id":"a"`)
	assert.Contains(t, string(b), `"id":"b"`)
	assert.Contains(t, string(b), `"tools"`)

	// A batch of notifications only is accepted with 202.
	st, b = rawPost(t, s.gw.URL, sid, `[{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}]`, nil)
	assert.Equal(t, http.StatusAccepted, st, "%s", b)
}

// TestPingAnsweredByGateway: ping gets {} from the gateway itself.
func TestPingAnsweredByGateway(t *testing.T) {
	s := startStack(t)
	cs := connect(t, s.gw.URL, nil, true)
	defer cs.Close()
	require.NoError(t, cs.Ping(context.Background(), nil))
	st, b := rawPost(t, s.gw.URL, cs.ID(), `{"jsonrpc":"2.0","id":"p-1","method":"ping"}`, nil)
	assert.Equal(t, http.StatusOK, st)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":"p-1","result":{}}`, string(b))
}

// TestSessionCapAndDeadUpstream: beyond -max-sessions initialize gets 503
// with Retry-After; an unreachable upstream gets 502 with a JSON-RPC error.
func TestSessionCapAndDeadUpstream(t *testing.T) {
	s := startStack(t, "-max-sessions", "1")
	first := connect(t, s.gw.URL, nil, true)
	defer first.Close()
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	req, _ := http.NewRequest(http.MethodPost, s.gw.URL, strings.NewReader(init))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", body)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Contains(t, string(body), `"id":1`)
	// The existing session is untouched.
	_, err = first.ListTools(context.Background(), nil)
	require.NoError(t, err)

	dead := testenv.StartGateway(t, testenv.Env(t, "MCPGATE_GATEWAY_BIN"), "http://"+testenv.RefusingAddr(t)+"/mcp", "-upstream-timeout", "2s")
	st, b := rawPost(t, dead.URL, "", init, nil)
	assert.Equal(t, http.StatusBadGateway, st, "%s", b)
	assert.Contains(t, string(b), `"code":-32603`)
	assert.Contains(t, string(b), `"id":1`)
}
