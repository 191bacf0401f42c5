package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// inProcess serves a gateway in front of a fake upstream on a loopback
// listener and returns its endpoint URL.
func inProcess(t *testing.T, up *testenv.FakeUpstream, cfg gateway.Config) string {
	_, url := inProcessServer(t, up, cfg)
	return url
}

// inProcessServer is inProcess that also returns the Server.
func inProcessServer(t *testing.T, up *testenv.FakeUpstream, cfg gateway.Config) (*gateway.Server, string) {
	t.Helper()
	cfg.Upstream = up
	return serveInProcess(t, cfg)
}

// serveInProcess serves a gateway with cfg (its Upstream set) on a
// loopback listener until the test ends.
func serveInProcess(t *testing.T, cfg gateway.Config) (*gateway.Server, string) {
	t.Helper()
	if cfg.DrainWindow == 0 {
		cfg.DrainWindow = -1
	}
	srv, err := gateway.New(cfg)
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

const meta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}`

// statelessPost sends one POST of the stateless revision with the given
// headers (nil values are left out) and returns status and body.
func statelessPost(t *testing.T, url, body string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp.Header
}

func mh(method string, extra ...string) map[string]string {
	h := map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": method}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

// TestStatelessHeaderValidation: every header rule of the revision (PROTOCOL.md
// section 2, rules 39-43) answered by the gateway itself, with the status,
// the code and the request's id; nothing invalid reaches the upstream.
func TestStatelessHeaderValidation(t *testing.T) {
	up := testenv.NewFakeUpstream(t)
	up.On("tools/call", testenv.Result(`{"content":[]}`))
	url := inProcess(t, up, gateway.Config{})
	call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{}, ` + meta + `}}`
	for _, c := range []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
		code   int
	}{
		{"missing Mcp-Method", call, map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Name": "echo"}, 400, -32020},
		{"wrong Mcp-Method", call, mh("tools/list", "Mcp-Name", "echo"), 400, -32020},
		{"Mcp-Method values are case-sensitive", call, mh("TOOLS/CALL", "Mcp-Name", "echo"), 400, -32020},
		{"missing Mcp-Name", call, mh("tools/call"), 400, -32020},
		{"wrong Mcp-Name", call, mh("tools/call", "Mcp-Name", "other"), 400, -32020},
		{"Mcp-Name base64 of another name", call, mh("tools/call", "Mcp-Name", "=?base64?b3RoZXI=?="), 400, -32020},
		{"invalid base64 in Mcp-Param", call, mh("tools/call", "Mcp-Name", "echo", "Mcp-Param-Region", "=?base64?!!!?="), 400, -32020},
		{"valid: it reaches the upstream", call, map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "  echo "}, 200, 0},
		{"_meta without protocolVersion",
			`{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/clientCapabilities":{}}}}`, mh("tools/list"), 400, -32602},
		{"_meta without clientCapabilities",
			`{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, mh("tools/list"), 400, -32602},
		{"no _meta at all", `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}`, mh("tools/list"), 400, -32602},
		{"header and _meta versions differ",
			`{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-12-01","io.modelcontextprotocol/clientCapabilities":{}}}}`,
			mh("tools/list"), 400, -32020},
		{"a version not served",
			`{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2099-01-01","io.modelcontextprotocol/clientCapabilities":{}}}}`,
			map[string]string{"MCP-Protocol-Version": "2099-01-01", "Mcp-Method": "tools/list"}, 400, -32022},
		{"a response", `{"jsonrpc":"2.0","id":7,"result":{}}`, mh(""), 400, -32600},
		{"a batch", `[{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{` + meta + `}}]`, mh("tools/list"), 400, -32600},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body, _ := statelessPost(t, url, c.body, c.hdr)
			assert.Equal(t, c.status, status, body)
			if c.code != 0 {
				var e struct {
					ID    json.RawMessage    `json:"id"`
					Error struct{ Code int } `json:"error"`
				}
				require.NoError(t, json.Unmarshal([]byte(body), &e), body)
				assert.Equal(t, c.code, e.Error.Code, body)
				if !strings.HasPrefix(c.body, "[") {
					assert.Equal(t, "7", string(e.ID), "the error carries the request's id")
				}
			}
		})
	}
	for _, m := range []string{"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"} {
		t.Run("removed "+m, func(t *testing.T) {
			status, body, _ := statelessPost(t, url, `{"jsonrpc":"2.0","id":9,"method":"`+m+`","params":{`+meta+`}}`, mh(m))
			assert.Equal(t, http.StatusNotFound, status)
			assert.Contains(t, body, `"code":-32601`)
			assert.Contains(t, body, `"id":9`)
		})
	}
	for _, r := range up.Records() {
		assert.NotContains(t, r.Body, `"id":7,"method":"tools/list"`, "an invalid request reached the upstream")
	}
}

// TestStatelessBridgeToSessions: stateless clients over a session-era
// upstream. server/discover comes from a pooled session's initialize; one
// pooled session serves requests of equal capabilities; the server-to-client
// requests a call sends at once (sampling and elicitation) become one
// input_required result, and the client's retry answers them upstream and
// gets the call's response.
func TestStatelessBridgeToSessions(t *testing.T) {
	up := testenv.NewFakeUpstream(t)
	asked := testenv.NewGate("the server's sampling request was answered")
	up.On("tools/call", testenv.Stream(
		testenv.Msg(`{"jsonrpc":"2.0","id":"srv-1","method":"sampling/createMessage","params":{"maxTokens":5,"messages":[]}}`),
		testenv.Msg(`{"jsonrpc":"2.0","id":"srv-2","method":"elicitation/create","params":{"message":"name?"}}`),
		testenv.Pause(asked),
		testenv.Respond(`{"content":[{"type":"text","text":"sampled"}]}`),
	))
	up.On("tools/list", testenv.Result(`{"tools":[]}`))
	url := inProcess(t, up, gateway.Config{AdvertiseStateless: true})

	status, body, _ := statelessPost(t, url, `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{`+meta+`}}`, mh("server/discover"))
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, `"supportedVersions":["2026-07-28"`)
	assert.Contains(t, body, `"resultType":"complete"`)

	status, body, _ = statelessPost(t, url, `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{`+meta+`}}`, mh("tools/list"))
	require.Equal(t, http.StatusOK, status, body)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":2,"result":{"tools":[],"resultType":"complete"}}`, body)

	call := `{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"sample","arguments":{},` + meta + `}}`
	status, body, _ = statelessPost(t, url, call, mh("tools/call", "Mcp-Name", "sample"))
	require.Equal(t, http.StatusOK, status, body)
	var irr struct {
		ID     string `json:"id"`
		Result struct {
			ResultType    string                     `json:"resultType"`
			InputRequests map[string]json.RawMessage `json:"inputRequests"`
			RequestState  string                     `json:"requestState"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &irr), body)
	assert.Equal(t, "c1", irr.ID)
	assert.Equal(t, "input_required", irr.Result.ResultType)
	require.Len(t, irr.Result.InputRequests, 2, "one round: both requests the server sent at once")
	assert.Contains(t, string(irr.Result.InputRequests["r1"]), `"method":"sampling/createMessage"`)
	assert.Contains(t, string(irr.Result.InputRequests["r2"]), `"method":"elicitation/create"`)

	retry := `{"jsonrpc":"2.0","id":"c2","method":"tools/call","params":{"name":"sample","arguments":{},` +
		`"inputResponses":{"r1":{"role":"assistant","content":{"type":"text","text":"hi"},"model":"m"},"r2":{"action":"accept","content":{"name":"Ada"}}},` +
		`"requestState":"` + irr.Result.RequestState + `",` + meta + `}}`
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		up.WaitFor(t, "the client's answers upstream", func(v *testenv.FakeView) bool {
			return v.Sent(`"id":"srv-1","result"`) && v.Sent(`"id":"srv-2","result"`)
		})
		asked.Release()
	}()
	status, body, _ = statelessPost(t, url, retry, mh("tools/call", "Mcp-Name", "sample"))
	<-answered
	require.Equal(t, http.StatusOK, status, body)
	assert.Contains(t, body, `"sampled"`)
	assert.Contains(t, body, `"id":"c2"`)
	sent := strings.Join(up.Sent(), "\n")
	assert.Contains(t, sent, `{"jsonrpc":"2.0","id":"srv-1","result":{"role":"assistant"`, "the client's answers went upstream under the server's ids")
	assert.Contains(t, sent, `{"jsonrpc":"2.0","id":"srv-2","result":{"action":"accept"`)
	assert.Equal(t, 1, countOp(up, "connect"), "one pooled session for equal capabilities")
}

func countOp(up *testenv.FakeUpstream, op string) int {
	n := 0
	for _, r := range up.Records() {
		if r.Op == op {
			n++
		}
	}
	return n
}

// TestStatelessCancelOnClose: a client of the revision that closes its
// answer stream cancels the request (rule 46): over a session-era upstream
// the gateway sends notifications/cancelled for it.
func TestStatelessCancelOnClose(t *testing.T) {
	up := testenv.NewFakeUpstream(t)
	never := testenv.NewGate("never released")
	up.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Pause(never), testenv.Respond(`{"content":[]}`)))
	url := inProcess(t, up, gateway.Config{Heartbeat: 50 * time.Millisecond})
	c, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(url, "/mcp"), "http://"))
	require.NoError(t, err)
	body := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"slow","arguments":{},"_meta":{"progressToken":"p","io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	_, err = io.WriteString(c, "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"+
		"MCP-Protocol-Version: 2026-07-28\r\nMcp-Method: tools/call\r\nMcp-Name: slow\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	require.NoError(t, err)
	br := bufio.NewReader(c)
	var seen strings.Builder
	for !strings.Contains(seen.String(), `"progress":1`) {
		line, err := br.ReadString('\n')
		require.NoError(t, err, seen.String())
		seen.WriteString(line)
	}
	assert.NotContains(t, seen.String(), "id: ", "no event ids in the stateless revision")
	require.NoError(t, c.Close())
	up.WaitFor(t, "notifications/cancelled upstream", func(v *testenv.FakeView) bool {
		return v.Sent(`"method":"notifications/cancelled"`)
	})
}

// TestStatelessUpstreamConnectionsReused: stateless requests passed
// through to a stateless HTTP upstream that answers with SSE streams reuse
// the gateway's upstream connections. The gateway used to close a finished
// answer stream as soon as its response was relayed, before the stream's
// terminating chunk arrived, which closed the connection: a dial per
// request (a fifth of the gateway's CPU in the stateless benchmark).
func TestStatelessUpstreamConnectionsReused(t *testing.T) {
	var dials atomic.Int64
	us := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if m.Method == "server/discover" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}}`, m.ID)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[],\"resultType\":\"complete\"}}\n\n", m.ID)
		w.(http.Flusher).Flush()
		time.Sleep(5 * time.Millisecond) // the stream's end comes after its response
	}))
	us.Config.ConnState = func(_ net.Conn, cs http.ConnState) {
		if cs == http.StateNew {
			dials.Add(1)
		}
	}
	us.Start()
	t.Cleanup(us.Close)
	tr, err := upstream.NewHTTP(upstream.HTTPConfig{URL: us.URL + "/mcp", Timeout: 5 * time.Second})
	require.NoError(t, err)
	_, url := serveInProcess(t, gateway.Config{Upstream: tr, UpstreamEra: gateway.UpstreamEraStateless})
	const calls = 20
	for i := range calls {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"t","arguments":{},%s}}`, i+1, meta)
		code, got, _ := statelessPost(t, url, body, mh("tools/call", "Mcp-Name", "t"))
		require.Equal(t, http.StatusOK, code, got)
		require.Contains(t, got, fmt.Sprintf(`"id":%d`, i+1))
		time.Sleep(10 * time.Millisecond) // the previous answer's end is read, its connection pooled
	}
	assert.LessOrEqual(t, dials.Load(), int64(3), "upstream connections for %d sequential stateless calls", calls)
}

// TestStatelessAnswerReadToItsEnd: a stateless request's answer stream that
// finished is read to its end by the gateway, not closed under the
// upstream's feet once the response is relayed: over HTTP, closing it
// before the terminating chunk arrived cost a new upstream connection per
// request (seen as a dial per call in the stateless benchmark's profile).
func TestStatelessAnswerReadToItsEnd(t *testing.T) {
	up := testenv.NewFakeUpstream(t)
	tail := testenv.NewGate("the stream's end")
	up.On("tools/call", testenv.Stream(testenv.Respond(`{"content":[]}`), testenv.Pause(tail)))
	url := inProcess(t, up, gateway.Config{})
	body := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"t","arguments":{},` + meta + `}}`
	code, got, _ := statelessPost(t, url, body, mh("tools/call", "Mcp-Name", "t"))
	require.Equal(t, http.StatusOK, code, got)
	require.Contains(t, got, `"id":5`)
	time.Sleep(50 * time.Millisecond) // the answer is out; the gateway must still be reading
	tail.Release()
	var end string
	up.WaitFor(t, "the answer stream ended", func(v *testenv.FakeView) bool {
		end = v.StreamEnd(1)
		return end != ""
	})
	assert.Equal(t, "EOF", end, "a finished answer stream is read to its end, not closed")
}
