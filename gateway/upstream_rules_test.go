package gateway_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/sse"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// scriptedLegacy is a legacy HTTP+SSE upstream (one session) whose test
// reads every message POSTed to it (got) and sends events on its stream
// (send). It answers initialize itself.
type scriptedLegacy struct {
	got  chan []byte
	send chan string
}

func startScriptedLegacy(t *testing.T) (*scriptedLegacy, upstream.Transport) {
	t.Helper()
	u := &scriptedLegacy{got: make(chan []byte, 16), send: make(chan string, 16)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "event: endpoint\ndata: /messages?sessionId=1\n\n")
		w.(http.Flusher).Flush()
		for {
			select {
			case ev := <-u.send:
				fmt.Fprintf(w, "event: message\ndata: %s\n\n", ev)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("POST /messages", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		if strings.Contains(string(b), `"method":"initialize"`) {
			u.send <- `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2024-11-05","capabilities":{"tools":{}},"serverInfo":{"name":"legacy","version":"1"}}}`
			return
		}
		u.got <- b
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	tr, err := upstream.NewLegacySSE(upstream.LegacySSEConfig{URL: srv.URL + "/sse", Timeout: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return u, tr
}

// next returns the next message POSTed upstream (initialize aside).
func (u *scriptedLegacy) next(t *testing.T) []byte {
	t.Helper()
	select {
	case b := <-u.got:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("nothing reached the upstream")
		return nil
	}
}

// sessionPost POSTs body on session sid and returns every message of the
// answer (JSON or SSE) once it ends.
func sessionPost(t *testing.T, url, sid, body string) (int, []string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(resp.Body)
		if len(b) == 0 {
			return resp.StatusCode, nil
		}
		return resp.StatusCode, []string{string(b)}
	}
	var msgs []string
	dec := sse.NewDecoder(bufio.NewReader(resp.Body), 1<<20)
	for {
		ev, err := dec.Next()
		if err != nil {
			return resp.StatusCode, msgs
		}
		if ev.HasData && len(bytes.TrimSpace(ev.Data)) > 0 {
			msgs = append(msgs, string(ev.Data))
		}
	}
}

func sessionInit(t *testing.T, url string) string {
	t.Helper()
	return initializeAt(t, url, "2025-06-18")
}

// initializeAt POSTs an initialize asking for version and returns the
// session id of its 200 answer.
func initializeAt(t *testing.T, url, version string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"`+version+`","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	sid := resp.Header.Get("Mcp-Session-Id")
	require.NotEmpty(t, sid)
	return sid
}

// TestSessionProgressTokensRewritten (PROTOCOL.md section 3, rule 3):
// progress tokens are rewritten both ways, as ids are. Two concurrent calls
// of one session carry the progress tokens 1 and "1", two tokens to the
// client; upstream they must be two tokens too (a legacy HTTP+SSE or stdio
// upstream's answers are routed by token value, as ids are), and the
// progress the upstream sends for the first call reaches the first call's
// stream only, under the client's token 1.
func TestSessionProgressTokensRewritten(t *testing.T) {
	up, tr := startScriptedLegacy(t)
	_, url := serveInProcess(t, gateway.Config{Upstream: tr, WholeAnswerWindow: -1})
	sid := sessionInit(t, url)

	type answer struct{ msgs []string }
	callA, callB := make(chan answer, 1), make(chan answer, 1)
	go func() {
		_, msgs := sessionPost(t, url, sid, `{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"slow","_meta":{"progressToken":1}}}`)
		callA <- answer{msgs}
	}()
	upA := up.next(t)
	go func() {
		_, msgs := sessionPost(t, url, sid, `{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"slow","_meta":{"progressToken":"1"}}}`)
		callB <- answer{msgs}
	}()
	upB := up.next(t)

	idA, _ := jsonrpc.Lookup(upA, "id")
	idB, _ := jsonrpc.Lookup(upB, "id")
	tokA, ok := jsonrpc.Lookup(upA, "params", "_meta", "progressToken")
	require.True(t, ok, "%s", upA)
	tokB, ok := jsonrpc.Lookup(upB, "params", "_meta", "progressToken")
	require.True(t, ok, "%s", upB)
	assert.NotEqual(t, strings.Trim(string(tokA), `"`), strings.Trim(string(tokB), `"`),
		"the calls' progress tokens upstream are distinct by value: %s and %s", tokA, tokB)

	// The upstream reports progress for call A, answers B, then A.
	up.send <- `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":` + string(tokA) + `,"progress":10,"total":100}}`
	up.send <- `{"jsonrpc":"2.0","id":` + string(idB) + `,"result":{"content":[]}}`
	up.send <- `{"jsonrpc":"2.0","id":` + string(idA) + `,"result":{"content":[]}}`

	var a, b answer
	select {
	case a = <-callA:
	case <-time.After(10 * time.Second):
		t.Fatal("call a not answered")
	}
	select {
	case b = <-callB:
	case <-time.After(10 * time.Second):
		t.Fatal("call b not answered")
	}
	require.NotEmpty(t, a.msgs)
	require.NotEmpty(t, b.msgs)
	assert.Contains(t, a.msgs[len(a.msgs)-1], `"id":"a"`)
	assert.Contains(t, b.msgs[len(b.msgs)-1], `"id":"b"`)
	var progressA []string
	for _, m := range a.msgs {
		if strings.Contains(m, "notifications/progress") {
			progressA = append(progressA, m)
		}
	}
	require.Len(t, progressA, 1, "call a's progress on call a's stream: %q", a.msgs)
	tok, _ := jsonrpc.Lookup([]byte(progressA[0]), "params", "progressToken")
	assert.Equal(t, "1", string(tok), "under the client's token")
	for _, m := range b.msgs {
		assert.NotContains(t, m, "notifications/progress", "call a's progress never reaches call b's stream")
	}
}

// TestUpstreamSessionRefused400EndsSession (PROTOCOL.md section 3, rules 5
// and 10): server-everything (and the TypeScript SDK's examples) answer a
// request on a session they no longer know with 400 and an id-less
// JSON-RPC error naming the session, not 404. The upstream session is gone
// all the same: the client gets 404 (its session ends, so it can start
// over) rather than a 400 on every request for ever, and later requests
// get 404 without reaching the upstream.
func TestUpstreamSessionRefused400EndsSession(t *testing.T) {
	var posts atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.Contains(string(b), `"method":"initialize"`):
			w.Header().Set("Mcp-Session-Id", "up-1")
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"everything","version":"1"}}}`)
		case r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") != "":
			posts.Add(1)
			w.WriteHeader(http.StatusBadRequest) // the upstream restarted: session up-1 is unknown
			fmt.Fprint(w, `{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request: No valid session ID provided"},"id":null}`)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	}))
	t.Cleanup(up.Close)
	tr, err := upstream.NewHTTP(upstream.HTTPConfig{URL: up.URL})
	require.NoError(t, err)
	_, url := serveInProcess(t, gateway.Config{Upstream: tr})
	sid := sessionInit(t, url)

	status, msgs := sessionPost(t, url, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	assert.Equal(t, http.StatusNotFound, status, "%q", msgs)
	require.Len(t, msgs, 1)
	assert.Contains(t, msgs[0], `"code":-32001`)
	status, _ = sessionPost(t, url, sid, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
	assert.Equal(t, http.StatusNotFound, status, "the session ended")
	assert.EqualValues(t, 1, posts.Load(), "the second request never reached the upstream")
}

// TestUpstream400RefusalRelayed: a 400 that refuses the message (an error
// about the request, or one not naming the session) is still relayed.
func TestUpstream400RefusalRelayed(t *testing.T) {
	up := initializedUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params"},"id":1}`)
	})
	tr, err := upstream.NewHTTP(upstream.HTTPConfig{URL: up.URL})
	require.NoError(t, err)
	_, url := serveInProcess(t, gateway.Config{Upstream: tr})
	sid := sessionInit(t, url)
	for range 2 {
		status, msgs := sessionPost(t, url, sid, `{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{}}`)
		assert.Equal(t, http.StatusBadRequest, status)
		require.Len(t, msgs, 1)
		assert.Contains(t, msgs[0], `"id":"x"`)
	}
}

// TestUpstream404ToInitializeIs502: an upstream that answers the opening
// initialize with 404 (an -upstream URL whose path is wrong: no MCP
// endpoint there, or no SSE endpoint for a legacy upstream) is upstream
// trouble, 502 with -32603 (PROTOCOL.md section 3, rule 10; README: 4xx
// other than 401 and 404 are relayed). Relayed, the 404 told the client
// its session was not found (section 2, rule 19: never 404 otherwise).
func TestUpstream404ToInitializeIs502(t *testing.T) {
	up := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(up.Close)
	httpUp, err := upstream.NewHTTP(upstream.HTTPConfig{URL: up.URL + "/mcp"})
	require.NoError(t, err)
	legacyUp, err := upstream.NewLegacySSE(upstream.LegacySSEConfig{URL: up.URL + "/sse"})
	require.NoError(t, err)
	for name, tr := range map[string]upstream.Transport{"streamable HTTP": httpUp, "legacy HTTP+SSE": legacyUp} {
		t.Run(name, func(t *testing.T) {
			_, url := serveInProcess(t, gateway.Config{Upstream: tr})
			status, msgs := sessionPost(t, url, "",
				`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
			assert.Equal(t, http.StatusBadGateway, status)
			require.Len(t, msgs, 1)
			assert.Contains(t, msgs[0], `"code":-32603`)
			assert.Contains(t, msgs[0], `"id":1`)
		})
	}
}

// TestJSONAnswerToNotificationIs202: some servers answer a notification
// (or a client's response) with 200 and an empty JSON body instead of 202
// (the Go SDK's client notes it). Nothing is owed to the client for such
// a POST: it gets 202 with no body (PROTOCOL.md section 2, rule 7), as when
// the upstream answers it with an SSE stream, and as the stateless path
// does; relayed, the 200 makes the Go SDK's client warn, or fail in its
// strict mode.
func TestJSONAnswerToNotificationIs202(t *testing.T) {
	up := initializedUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK) // no body
	})
	tr, err := upstream.NewHTTP(upstream.HTTPConfig{URL: up.URL})
	require.NoError(t, err)
	_, url := serveInProcess(t, gateway.Config{Upstream: tr})
	sid := sessionInit(t, url)
	for _, body := range []string{
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`{"jsonrpc":"2.0","id":"s1","result":{}}`, // an answer to a server request
	} {
		status, msgs := sessionPost(t, url, sid, body)
		assert.Equal(t, http.StatusAccepted, status, body)
		assert.Empty(t, msgs, body)
	}
}

// TestUpstreamRetryAfterRelayed: an upstream's 429 is the client's to
// follow, with the upstream's advice on when (RFC 9110 section 10.2.3);
// relayed without it, clients retry at once. A malformed value is not
// relayed.
func TestUpstreamRetryAfterRelayed(t *testing.T) {
	for _, tc := range []struct{ upstream, relayed string }{
		{"7", "7"},
		{"Wed, 21 Oct 2026 07:28:00 GMT", "Wed, 21 Oct 2026 07:28:00 GMT"},
		{"soon", ""},
	} {
		up := initializedUpstream(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", tc.upstream)
			http.Error(w, "slow down", http.StatusTooManyRequests)
		})
		tr, err := upstream.NewHTTP(upstream.HTTPConfig{URL: up.URL})
		require.NoError(t, err)
		_, url := serveInProcess(t, gateway.Config{Upstream: tr})
		sid := sessionInit(t, url)
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "%s", body)
		assert.Contains(t, string(body), `"id":1`)
		assert.Equal(t, tc.relayed, resp.Header.Get("Retry-After"), "upstream's %q", tc.upstream)
	}
}

// initializedUpstream is a Streamable HTTP upstream that answers
// initialize (session up-1, version 2025-06-18) with JSON and every other
// POST with then.
func initializedUpstream(t *testing.T, then http.HandlerFunc) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"method":"initialize"`) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Mcp-Session-Id", "up-1")
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		then(w, r)
	}))
	t.Cleanup(up.Close)
	return up
}
