package gateway_test

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// TestStatelessIgnoresLastEventID: the stateless revision has no
// resumption, so a Last-Event-ID on its POST is ignored (PROTOCOL.md
// section 2, rule 31), not refused like a session-era POST's (rule 6).
func TestStatelessIgnoresLastEventID(t *testing.T) {
	up := testenv.NewFakeUpstream(t)
	up.On("tools/list", testenv.Result(`{"tools":[]}`))
	url := inProcess(t, up, gateway.Config{})
	body := `{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{` + meta + `}}`
	status, got, _ := statelessPost(t, url, body, mh("tools/list", "Last-Event-ID", "1_1"))
	assert.Equal(t, http.StatusOK, status, got)
	assert.Contains(t, got, `"tools":[]`)
}

// TestStatelessPoolProgressTokens: stateless clients number their requests
// alike and often use the request id as progress token, so two clients on
// one pooled session send the same token. The pool rewrites ids and
// progress tokens (PROTOCOL.md section 3, rule 3): the upstream sees a token
// unique in its session (a stdio upstream routes progress by it), and each
// client gets its progress back under its own token.
func TestStatelessPoolProgressTokens(t *testing.T) {
	up := testenv.NewFakeUpstream(t)
	gate := testenv.NewGate("both calls in flight")
	up.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Pause(gate), testenv.Respond(`{"content":[]}`)))
	url := inProcess(t, up, gateway.Config{})
	bodies := make(chan string, 2)
	for id := 1; id <= 2; id++ {
		go func() {
			body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"t","arguments":{},"_meta":{"progressToken":"p",`+
				`"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`, id)
			_, got, _ := statelessPost(t, url, body, mh("tools/call", "Mcp-Name", "t"))
			bodies <- got
		}()
	}
	var tokens []string
	require.Eventually(t, func() bool {
		tokens = tokens[:0]
		for _, b := range up.Sent() {
			if strings.Contains(b, `"method":"tools/call"`) {
				tok, _ := jsonrpc.Lookup([]byte(b), "params", "_meta", "progressToken")
				tokens = append(tokens, string(tok))
			}
		}
		return len(tokens) == 2
	}, 5*time.Second, 5*time.Millisecond)
	gate.Release()
	assert.NotEqual(t, tokens[0], tokens[1], "two calls in flight on one pooled session with one progress token")
	for range 2 {
		got := <-bodies
		assert.Contains(t, got, `"progressToken":"p"`, "the client's progress under its own token")
		assert.Contains(t, got, `"content":[]`)
	}
	assert.Equal(t, 1, countOp(up, "connect"), "one pooled session")
}

// TestStatelessPoolListenAcknowledgesHonouredFilter: over a session-era
// upstream, subscriptions/listen is acknowledged with the filter the pooled
// session can honour (PROTOCOL.md section 2, rule 45): the fake upstream
// offers tools list changes only (no prompts, no resource subscriptions),
// so the acknowledgement names toolsListChanged alone and no
// resources/subscribe goes upstream.
func TestStatelessPoolListenAcknowledgesHonouredFilter(t *testing.T) {
	up := testenv.NewFakeUpstream(t)
	url := inProcess(t, up, gateway.Config{})
	body := `{"jsonrpc":"2.0","id":"L","method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true,` +
		`"promptsListChanged":true,"resourceSubscriptions":["file:///a"]},` + meta + `}}`
	ack := listenEvents(t, url, body, 1)[0]
	require.Contains(t, ack, `"method":"notifications/subscriptions/acknowledged"`)
	n, ok := jsonrpc.Lookup([]byte(ack), "params", "notifications")
	require.True(t, ok, ack)
	assert.JSONEq(t, `{"toolsListChanged":true}`, string(n), "the acknowledgement names what is honoured only")
	for _, b := range up.Sent() {
		assert.NotContains(t, b, `"resources/subscribe"`, "the upstream offers no resource subscriptions")
	}
}

// listenEvents sends a subscriptions/listen request and returns the data of
// its first n events.
func listenEvents(t *testing.T, url, body string, n int) []string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range mh("subscriptions/listen") {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	br := bufio.NewReader(resp.Body)
	var events []string
	for len(events) < n {
		line, err := br.ReadString('\n')
		require.NoError(t, err, events)
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			events = append(events, data)
		}
	}
	return events
}

// TestStatelessListenTaggedWithClientID: every message of a
// subscriptions/listen stream carries _meta subscriptionId = the listen
// request's id (PROTOCOL.md section 2, rule 45). The request goes upstream
// under the gateway's own id, so the upstream tags with that one: the client
// must see its own, passed through (a stateless upstream) or bridged (the
// session pool).
func TestStatelessListenTaggedWithClientID(t *testing.T) {
	tr := statelessListenUpstream(t, "notifications/tools/list_changed")
	_, url := serveInProcess(t, gateway.Config{Upstream: tr, UpstreamEra: gateway.UpstreamEraStateless})
	body := `{"jsonrpc":"2.0","id":"L","method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true},` + meta + `}}`
	for _, ev := range listenEvents(t, url, body, 2) {
		assert.Contains(t, ev, `"io.modelcontextprotocol/subscriptionId":"L"`, "passed through")
	}

	up := testenv.NewFakeUpstream(t)
	url = inProcess(t, up, gateway.Config{})
	ack := listenEvents(t, url, body, 1)[0]
	assert.Contains(t, ack, `"io.modelcontextprotocol/subscriptionId":"L"`, "bridged")
}
