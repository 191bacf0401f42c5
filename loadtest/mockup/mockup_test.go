package mockup

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mcpgate/mcpgate/gateway/sse"
)

func TestMain(m *testing.M) {
	// fasthttp's worker pool cleaner sleeps up to MaxIdleWorkerDuration before it sees Stop.
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"))
}

// testServer starts a Server on a loopback port and returns its /mcp URL.
func testServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	srv, err := New(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		assert.NoError(t, <-done)
	})
	return srv, "http://" + ln.Addr().String() + "/mcp"
}

// client is a plain net/http MCP client for wire-level checks.
type client struct {
	t    *testing.T
	url  string
	hc   *http.Client
	sid  string
	ver  string
	next int
}

func newClient(t *testing.T, url string) *client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, url: url, hc: &http.Client{Transport: tr}}
}

func (c *client) post(body string, hdr map[string]string) *http.Response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.url, bytes.NewBufferString(body))
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.sid != "" {
		req.Header.Set("Mcp-Session-Id", c.sid)
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := c.hc.Do(req)
	require.NoError(c.t, err)
	return resp
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return b
}

func (c *client) initialize(version string) map[string]any {
	c.t.Helper()
	resp := c.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+version+`","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, nil)
	require.Equal(c.t, http.StatusOK, resp.StatusCode)
	c.sid = resp.Header.Get("Mcp-Session-Id")
	require.NotEmpty(c.t, c.sid)
	var msg map[string]any
	require.NoError(c.t, json.Unmarshal(readAll(c.t, resp), &msg))
	res := msg["result"].(map[string]any)
	c.ver = res["protocolVersion"].(string)
	resp = c.post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil)
	require.Equal(c.t, http.StatusAccepted, resp.StatusCode)
	readAll(c.t, resp)
	return res
}

func (c *client) callTool(name, args, meta string) *http.Response {
	c.next++
	p := `"name":"` + name + `","arguments":` + args
	if meta != "" {
		p += `,"_meta":` + meta
	}
	return c.post(`{"jsonrpc":"2.0","id":`+strconv.Itoa(c.next)+`,"method":"tools/call","params":{`+p+`}}`, nil)
}

func (c *client) get(lastID string) *http.Response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.url, nil)
	require.NoError(c.t, err)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", c.sid)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := c.hc.Do(req)
	require.NoError(c.t, err)
	return resp
}

// event is one decoded SSE event of the mock.
type event struct {
	id     string
	method string
	seq    uint64
	isResp bool
	result map[string]any
	raw    map[string]any
}

// readEvents decodes events from r until stop returns true or the stream ends.
func readEvents(t *testing.T, r io.Reader, stop func(event) bool) []event {
	t.Helper()
	dec := sse.NewDecoder(r, 0)
	var out []event
	for {
		ev, err := dec.Next()
		if err != nil {
			return out
		}
		if len(ev.Data) == 0 {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal(ev.Data, &m), "%s", ev.Data)
		e := event{id: string(ev.ID), raw: m}
		if meth, ok := m["method"].(string); ok {
			e.method = meth
			if p, ok := m["params"].(map[string]any); ok {
				if meta, ok := p["_meta"].(map[string]any); ok {
					e.seq = uint64(meta["seq"].(float64))
				}
			}
		} else {
			e.isResp = true
			e.result, _ = m["result"].(map[string]any)
		}
		out = append(out, e)
		if stop != nil && stop(e) {
			return out
		}
	}
}

func errorCode(t *testing.T, body []byte) int {
	t.Helper()
	var m struct {
		Error struct{ Code int } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &m), "%s", body)
	return m.Error.Code
}

func TestInitializeNegotiates(t *testing.T) {
	_, url := testServer(t, Config{})
	tests := []struct{ asked, want string }{
		{Version20250326, Version20250326},
		{Version20250618, Version20250618},
		{Version20251125, Version20251125},
		{"1999-01-01", LatestSessionVersion},
	}
	for _, tt := range tests {
		t.Run(tt.asked, func(t *testing.T) {
			c := newClient(t, url)
			res := c.initialize(tt.asked)
			assert.Equal(t, tt.want, res["protocolVersion"])
			assert.Equal(t, ServerName, res["serverInfo"].(map[string]any)["name"])
		})
	}
}

func TestPostRejections(t *testing.T) {
	_, url := testServer(t, Config{})
	live := newClient(t, url)
	live.initialize(Version20251125)
	tests := []struct {
		name   string
		sid    string
		body   string
		hdr    map[string]string
		status int
		code   int // 0: no JSON-RPC error body expected
	}{
		{"content type", live.sid, `{}`, map[string]string{"Content-Type": "text/plain"}, 415, CodeTransport},
		{"accept", live.sid, `{}`, map[string]string{"Accept": "application/json"}, 400, CodeTransport},
		{"empty body", live.sid, ``, nil, 400, CodeTransport},
		{"bad json", live.sid, `{`, nil, 400, CodeParseError},
		{"batch", live.sid, `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, nil, 400, CodeInvalidRequest},
		{"not a message", live.sid, `{"jsonrpc":"2.0"}`, nil, 400, CodeInvalidRequest},
		{"no session", "", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil, 400, CodeTransport},
		{"unknown session", "nope", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil, 404, CodeSessionNotFound},
		{"initialize with session", live.sid, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, nil, 400, CodeInvalidRequest},
		{"bad version header", live.sid, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"MCP-Protocol-Version": "2000-01-01"}, 400, CodeUnsupportedVersion},
		{"unknown method", live.sid, `{"jsonrpc":"2.0","id":1,"method":"nope"}`, nil, 200, CodeMethodNotFound},
		{"unknown tool", live.sid, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}`, nil, 200, CodeInvalidParams},
		{"bad echo size", live.sid, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"size":-1}}}`, nil, 200, CodeInvalidParams},
		{"notification", live.sid, `{"jsonrpc":"2.0","method":"notifications/whatever"}`, nil, 202, 0},
		{"client response", live.sid, `{"jsonrpc":"2.0","id":5,"result":{}}`, nil, 202, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, url)
			c.sid = tt.sid
			resp := c.post(tt.body, tt.hdr)
			body := readAll(t, resp)
			assert.Equal(t, tt.status, resp.StatusCode, "%s", body)
			if tt.code != 0 {
				assert.Equal(t, tt.code, errorCode(t, body))
			} else {
				assert.Empty(t, body)
			}
		})
	}
}

func TestEchoAndToolsList(t *testing.T) {
	_, url := testServer(t, Config{})
	c := newClient(t, url)
	c.initialize(Version20250618)
	body := readAll(t, c.callTool("echo", `{"size":37}`, ""))
	var m struct {
		Result struct {
			Content []struct{ Text string }
		}
	}
	require.NoError(t, json.Unmarshal(body, &m))
	require.Len(t, m.Result.Content, 1)
	assert.Len(t, m.Result.Content[0].Text, 37)

	body = readAll(t, c.callTool("echo", `{"text":"héllo \"x\""}`, ""))
	require.NoError(t, json.Unmarshal(body, &m))
	assert.Equal(t, "héllo \"x\"", m.Result.Content[0].Text)

	resp := c.post(`{"jsonrpc":"2.0","id":"list","method":"tools/list"}`, nil)
	var tl struct {
		ID     string
		Result struct{ Tools []struct{ Name string } }
	}
	require.NoError(t, json.Unmarshal(readAll(t, resp), &tl))
	assert.Equal(t, "list", tl.ID)
	var names []string
	for _, tool := range tl.Result.Tools {
		names = append(names, tool.Name)
	}
	assert.Equal(t, []string{"echo", "stream", "push", "notify"}, names)
}

func TestStreamToolExact(t *testing.T) {
	srv, url := testServer(t, Config{})
	for _, version := range []string{Version20250618, Version20251125} {
		t.Run(version, func(t *testing.T) {
			c := newClient(t, url)
			c.initialize(version)
			resp := c.callTool("stream", `{"count":250,"rate":0}`, `{"progressToken":"tok"}`)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
			evs := readEvents(t, resp.Body, nil)
			resp.Body.Close()
			require.Len(t, evs, 251)
			for i, e := range evs[:250] {
				assert.Equal(t, "notifications/progress", e.method)
				assert.Equal(t, uint64(i+1), e.seq)
				p := e.raw["params"].(map[string]any)
				assert.Equal(t, "tok", p["progressToken"])
				assert.Equal(t, float64(i+1), p["progress"])
				assert.Equal(t, float64(250), p["total"])
				assert.Equal(t, fmt.Sprintf("1_%d", i+1), e.id)
			}
			last := evs[250]
			require.True(t, last.isResp)
			assert.Equal(t, float64(250), last.result["structuredContent"].(map[string]any)["count"])
		})
	}
	assert.Equal(t, int64(500), srv.Snapshot().Events[KindProgress])
	assert.Equal(t, int64(2), srv.Snapshot().Events[KindResultSSE])
}

func TestStreamToolWithoutTokenSendsOnlyTheResult(t *testing.T) {
	_, url := testServer(t, Config{})
	c := newClient(t, url)
	c.initialize(Version20251125)
	resp := c.callTool("stream", `{"count":5}`, "")
	evs := readEvents(t, resp.Body, nil)
	resp.Body.Close()
	require.Len(t, evs, 1)
	assert.True(t, evs[0].isResp)
}

// TestStreamToolResume cuts the answer stream after a few events and resumes it with
// Last-Event-ID: every progress notification arrives exactly once, then the result.
func TestStreamToolResume(t *testing.T) {
	srv, url := testServer(t, Config{})
	c := newClient(t, url)
	c.initialize(Version20251125)
	resp := c.callTool("stream", `{"count":40,"rate":400}`, `{"progressToken":7}`)
	first := readEvents(t, resp.Body, func(e event) bool { return e.seq == 10 })
	resp.Body.Close() // the cut
	require.Len(t, first, 10)

	resp = c.get(first[len(first)-1].id)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	rest := readEvents(t, resp.Body, nil)
	resp.Body.Close()
	require.NotEmpty(t, rest)
	assert.True(t, rest[len(rest)-1].isResp)
	seen := map[uint64]int{}
	for _, e := range append(first, rest[:len(rest)-1]...) {
		seen[e.seq]++
	}
	assert.Len(t, seen, 40)
	for seq, n := range seen {
		assert.Equal(t, 1, n, "seq %d", seq)
	}
	assert.Equal(t, int64(1), srv.Snapshot().Resumes)
}

func TestResumeRefused(t *testing.T) {
	srv, url := testServer(t, Config{ReplayEvents: 4})
	c := newClient(t, url)
	c.initialize(Version20251125)
	resp := c.callTool("stream", `{"count":20}`, `{"progressToken":1}`)
	readAll(t, resp)
	for _, id := range []string{"garbage", "9_1", "1_2", "0_99"} {
		resp := c.get(id)
		body := readAll(t, resp)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s: %s", id, body)
	}
	assert.Equal(t, int64(4), srv.Snapshot().ResumesRefused)
}

// getStreamFixture starts a mock server, opens a 2025-11-25 session on it and the
// session's GET stream, which is closed when the test ends.
func getStreamFixture(t *testing.T) (*Server, *client, *http.Response) {
	t.Helper()
	srv, url := testServer(t, Config{})
	c := newClient(t, url)
	c.initialize(Version20251125)
	get := c.get("")
	require.Equal(t, http.StatusOK, get.StatusCode)
	t.Cleanup(func() { _ = get.Body.Close() })
	return srv, c, get
}

// TestPushOnGetStream pushes at a fixed rate on the GET stream, stops, and checks that
// the stream carried exactly the sequence numbers 1..last_seq.
func TestPushOnGetStream(t *testing.T) {
	srv, c, get := getStreamFixture(t)

	body := readAll(t, c.callTool("push", `{"rate":500,"pad":3}`, ""))
	assert.Contains(t, string(body), `"last_seq":0`)
	time.Sleep(100 * time.Millisecond)
	last := stopPush(t, c)
	require.Positive(t, last)
	evs := readEvents(t, get.Body, func(e event) bool { return e.seq == last })
	require.Len(t, evs, int(last))
	for i, e := range evs {
		assert.Equal(t, "notifications/message", e.method)
		assert.Equal(t, uint64(i+1), e.seq)
		assert.Equal(t, "0_"+strconv.Itoa(i+1), e.id)
	}
	assert.Equal(t, int64(last), srv.Snapshot().Events[KindPush])
}

// stopPush sets the push rate to 0 and returns the last push number sent.
func stopPush(t *testing.T, c *client) uint64 {
	t.Helper()
	var stop struct {
		Result struct {
			StructuredContent struct {
				LastSeq uint64 `json:"last_seq"`
			} `json:"structuredContent"`
		}
	}
	require.NoError(t, json.Unmarshal(readAll(t, c.callTool("push", `{"rate":0}`, "")), &stop))
	return stop.Result.StructuredContent.LastSeq
}

// TestPushBursts: with burst the pusher appends whole bursts (the sequence stops at a
// multiple of the burst), every event exactly once and in order; a burst out of range
// is refused.
func TestPushBursts(t *testing.T) {
	srv, c, get := getStreamFixture(t)

	for _, bad := range []string{`{"rate":100,"burst":0}`, `{"rate":100,"burst":1025}`, `{"rate":100,"burst":"x"}`} {
		assert.Contains(t, string(readAll(t, c.callTool("push", bad, ""))), "bad rate, pad or burst", bad)
	}
	readAll(t, c.callTool("push", `{"rate":6400,"burst":64}`, ""))
	time.Sleep(150 * time.Millisecond)
	last := stopPush(t, c)
	require.Positive(t, last)
	assert.Zero(t, last%64, "whole bursts only: last_seq %d", last)
	evs := readEvents(t, get.Body, func(e event) bool { return e.seq == last })
	require.Len(t, evs, int(last))
	for i, e := range evs {
		assert.Equal(t, uint64(i+1), e.seq)
	}
	assert.Equal(t, int64(last), srv.Snapshot().Events[KindPush])
}

// TestNotifyOnGetStream: the notify tool sends list_changed notifications on the GET
// stream, numbered with pushed events; one sent while no GET stream is open waits for
// the next GET.
func TestNotifyOnGetStream(t *testing.T) {
	srv, url := testServer(t, Config{})
	c := newClient(t, url)
	c.initialize(Version20251125)

	notify := func(args string) uint64 {
		t.Helper()
		var res struct {
			Result struct {
				StructuredContent struct {
					Kind string
					Seq  uint64
				} `json:"structuredContent"`
			}
		}
		require.NoError(t, json.Unmarshal(readAll(t, c.callTool("notify", args, "")), &res))
		return res.Result.StructuredContent.Seq
	}
	assert.Equal(t, uint64(1), notify(`{}`), "sent before any GET stream")
	get := c.get("")
	require.Equal(t, http.StatusOK, get.StatusCode)
	defer get.Body.Close()
	assert.Equal(t, uint64(2), notify(`{"kind":"prompts"}`))
	assert.Equal(t, uint64(3), notify(`{"kind":"resources"}`))

	evs := readEvents(t, get.Body, func(e event) bool { return e.seq == 3 })
	require.Len(t, evs, 3)
	for i, want := range []string{"tools", "prompts", "resources"} {
		assert.Equal(t, "notifications/"+want+"/list_changed", evs[i].method)
		assert.Equal(t, uint64(i+1), evs[i].seq)
		assert.Equal(t, "0_"+strconv.Itoa(i+1), evs[i].id)
	}
	assert.Equal(t, int64(3), srv.Snapshot().Events[KindListChanged])
	assert.Equal(t, int64(3), srv.Snapshot().ToolCalls["notify"])

	body := readAll(t, c.callTool("notify", `{"kind":"nope"}`, ""))
	assert.Equal(t, CodeInvalidParams, errorCode(t, body))
}

func TestInjection(t *testing.T) {
	srv, url := testServer(t, Config{InjectLossEvery: 3, InjectDupEvery: 4})
	c := newClient(t, url)
	c.initialize(Version20251125)
	resp := c.callTool("stream", `{"count":12}`, `{"progressToken":"x"}`)
	evs := readEvents(t, resp.Body, nil)
	resp.Body.Close()
	var seqs []uint64
	for _, e := range evs {
		if !e.isResp {
			seqs = append(seqs, e.seq)
		}
	}
	// 3, 6, 9 and 12 are skipped; 4 and 8 are doubled.
	assert.Equal(t, []uint64{1, 2, 4, 4, 5, 7, 8, 8, 10, 11}, seqs)
	snap := srv.Snapshot()
	assert.Equal(t, int64(4), snap.InjectedLoss)
	assert.Equal(t, int64(2), snap.InjectedDup)
	assert.Equal(t, int64(10), snap.Events[KindProgress])
	require.True(t, evs[len(evs)-1].isResp)
	assert.Equal(t, float64(8), evs[len(evs)-1].result["structuredContent"].(map[string]any)["emitted"])
}

func TestDeleteEndsSessionAndStreams(t *testing.T) {
	srv, c, get := getStreamFixture(t)
	url := c.url
	ended := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, get.Body)
		close(ended)
	}()
	del := func() int {
		req, err := http.NewRequest(http.MethodDelete, url, nil)
		require.NoError(t, err)
		req.Header.Set("Mcp-Session-Id", c.sid)
		resp, err := c.hc.Do(req)
		require.NoError(t, err)
		readAll(t, resp)
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusNoContent, del())
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("GET stream did not end after DELETE")
	}
	get.Body.Close()
	assert.Equal(t, http.StatusNotFound, del())
	resp := c.post(`{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	readAll(t, resp)
	snap := srv.Snapshot()
	assert.Equal(t, int64(1), snap.SessionsCreated)
	assert.Equal(t, int64(1), snap.SessionsDeleted)
	assert.Equal(t, int64(0), snap.SessionsActive)
}

func TestSecondGetTakesOver(t *testing.T) {
	srv, url := testServer(t, Config{})
	c := newClient(t, url)
	c.initialize(Version20251125)
	first := c.get("")
	require.Equal(t, http.StatusOK, first.StatusCode)
	second := c.get("")
	require.Equal(t, http.StatusOK, second.StatusCode)
	// The first stream ends: it read ": ok" and then EOF.
	done := make(chan []byte)
	go func() { b, _ := io.ReadAll(first.Body); done <- b }()
	select {
	case b := <-done:
		assert.Equal(t, ": ok\n\n", string(b))
	case <-time.After(5 * time.Second):
		t.Fatal("the first GET stream was not taken over")
	}
	first.Body.Close()
	second.Body.Close()
	assert.Equal(t, int64(1), srv.Snapshot().Takeovers)
}

func statelessBody(id int, method, params string) string {
	return `{"jsonrpc":"2.0","id":` + strconv.Itoa(id) + `,"method":"` + method + `","params":` + params + `}`
}

func TestStateless(t *testing.T) {
	_, url := testServer(t, Config{})
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
	good := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "echo"}
	with := func(k, v string) map[string]string {
		h := map[string]string{}
		for a, b := range good {
			h[a] = b
		}
		h[k] = v
		return h
	}
	tests := []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
		code   int
	}{
		{"echo", statelessBody(1, "tools/call", `{"name":"echo","arguments":{"size":2},`+meta+`}`), good, 200, 0},
		{"missing version header", statelessBody(1, "tools/call", `{"name":"echo",`+meta+`}`), with("MCP-Protocol-Version", ""), 400, CodeHeaderMismatch},
		{"wrong Mcp-Name", statelessBody(1, "tools/call", `{"name":"echo",`+meta+`}`), with("Mcp-Name", "other"), 400, CodeHeaderMismatch},
		{"wrong Mcp-Method", statelessBody(1, "tools/call", `{"name":"echo",`+meta+`}`), with("Mcp-Method", "tools/list"), 400, CodeHeaderMismatch},
		{"no capabilities", statelessBody(1, "tools/call", `{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}`), good, 400, CodeInvalidParams},
		{"unserved version", statelessBody(1, "tools/call", `{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2027-01-01","io.modelcontextprotocol/clientCapabilities":{}}}`), with("MCP-Protocol-Version", "2027-01-01"), 400, CodeUnsupportedVersion},
		{"ping removed", statelessBody(1, "ping", `{`+meta+`}`), with("Mcp-Method", "ping"), 404, CodeMethodNotFound},
		{"discover", statelessBody(1, "server/discover", `{`+meta+`}`), with("Mcp-Method", "server/discover"), 200, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, url)
			resp := c.post(tt.body, tt.hdr)
			body := readAll(t, resp)
			assert.Equal(t, tt.status, resp.StatusCode, "%s", body)
			assert.Empty(t, resp.Header.Get("Mcp-Session-Id"))
			if tt.code != 0 {
				assert.Equal(t, tt.code, errorCode(t, body))
			} else {
				assert.Contains(t, string(body), `"resultType":"complete"`)
			}
		})
	}
}

func TestStatelessStream(t *testing.T) {
	_, url := testServer(t, Config{Era: EraStateless})
	c := newClient(t, url)
	body := statelessBody(3, "tools/call", `{"name":"stream","arguments":{"count":5},"_meta":{"progressToken":"p","io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}`)
	resp := c.post(body, map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "stream"})
	evs := readEvents(t, resp.Body, nil)
	resp.Body.Close()
	require.Len(t, evs, 6)
	for _, e := range evs {
		assert.Empty(t, e.id, "stateless events carry no ids")
	}
	assert.Equal(t, "complete", evs[5].result["resultType"])

	// Session-era requests are refused in stateless-only mode.
	resp = c.post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	readAll(t, resp)
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	r2, err := c.hc.Do(req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusMethodNotAllowed, r2.StatusCode)
	assert.Equal(t, "POST", r2.Header.Get("Allow"))
	readAll(t, r2)
}

func TestStatsAndMetrics(t *testing.T) {
	_, url := testServer(t, Config{})
	c := newClient(t, url)
	c.initialize(Version20251125)
	readAll(t, c.callTool("echo", `{}`, ""))
	base := url[:len(url)-len("/mcp")]
	resp, err := c.hc.Get(base + "/stats")
	require.NoError(t, err)
	var snap Snapshot
	require.NoError(t, json.Unmarshal(readAll(t, resp), &snap))
	assert.Equal(t, int64(1), snap.SessionsCreated)
	assert.Equal(t, int64(1), snap.Requests["initialize"])
	assert.Equal(t, int64(1), snap.Requests["notifications/initialized"])
	assert.Equal(t, int64(1), snap.Requests["tools/call"])
	assert.Equal(t, int64(1), snap.ToolCalls["echo"])
	assert.Equal(t, int64(2), snap.Events[KindResultJSON])

	resp, err = c.hc.Get(base + "/metrics")
	require.NoError(t, err)
	text := string(readAll(t, resp))
	assert.Contains(t, text, "\ngo_goroutines ")
	assert.Contains(t, text, "\nmcpgate_loadtest_upstream_sessions 1\n")
}

func TestAnswerSSE(t *testing.T) {
	srv, url := testServer(t, Config{AnswerSSE: true})
	c := newClient(t, url)
	resp := c.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`, nil)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	c.sid = resp.Header.Get("Mcp-Session-Id")
	evs := readEvents(t, resp.Body, nil)
	resp.Body.Close()
	require.Len(t, evs, 1)
	assert.Equal(t, "2025-06-18", evs[0].result["protocolVersion"])
	assert.Equal(t, int64(1), srv.Snapshot().Events[KindResultSSE])
}

// TestAnswerDelay: with AnswerDelay an SSE answer's headers come at once
// and its event that much later.
func TestAnswerDelay(t *testing.T) {
	const delay = time.Second
	srv, url := testServer(t, Config{AnswerSSE: true, AnswerDelay: delay})
	c := newClient(t, url)
	start := time.Now()
	resp := c.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`, nil)
	headersAt := time.Since(start)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	evs := readEvents(t, resp.Body, nil)
	eventAt := time.Since(start)
	resp.Body.Close()
	require.Len(t, evs, 1)
	assert.Equal(t, "2025-06-18", evs[0].result["protocolVersion"])
	assert.GreaterOrEqual(t, eventAt, delay, "the event comes after the delay")
	assert.Greater(t, eventAt-headersAt, delay/2, "the headers came well before it (%v, event at %v)", headersAt, eventAt)
	assert.Equal(t, int64(1), srv.Snapshot().Events[KindResultSSE])
}

func TestConfig(t *testing.T) {
	c, err := Config{}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, DefaultReplayEvents, c.ReplayEvents)
	assert.Equal(t, DefaultHeartbeat, c.Heartbeat)
	assert.Equal(t, DefaultMaxSessions, c.MaxSessions)
	assert.Equal(t, DefaultMaxPayload, c.MaxPayload)
	assert.Equal(t, DefaultFinishedTTL, c.FinishedTTL)
	for _, bad := range []Config{
		{PushRate: -1}, {PushPad: -1}, {ReplayEvents: -1}, {MaxSessions: -1},
		{MaxPayload: -1}, {MaxStreamCount: -1}, {FinishedTTL: -1}, {Era: Era(9)},
		{MaxPayload: 10, PushPad: 11}, {AnswerDelay: -1},
	} {
		_, err := New(bad)
		assert.ErrorIs(t, err, ErrBadConfig, "%+v", bad)
	}
	for _, s := range []string{"both", "session", "stateless"} {
		e, err := ParseEra(s)
		require.NoError(t, err)
		assert.Equal(t, s, e.String())
	}
	_, err = ParseEra("x")
	assert.ErrorIs(t, err, ErrBadConfig)
}

func TestMaxSessions(t *testing.T) {
	srv, url := testServer(t, Config{MaxSessions: 1})
	newClient(t, url).initialize(Version20251125)
	c := newClient(t, url)
	resp := c.post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}`, nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	readAll(t, resp)
	assert.Equal(t, int64(1), srv.Snapshot().SessionsRefused)
}
