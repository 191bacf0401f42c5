package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// openListen POSTs a stateless subscriptions/listen (id "L") and returns
// the response, whose acknowledgement has been read, and its reader.
func openListen(t *testing.T, url string) (*http.Response, *bufio.Reader) {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":"L","method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true},` + meta + `}}`
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range mh("subscriptions/listen") {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(line, "data: ") {
			require.Contains(t, line, "notifications/subscriptions/acknowledged")
			return resp, br
		}
	}
}

// restOf reads what is left of an SSE body: its data lines and other
// lines, until the end or an error.
func restOf(br *bufio.Reader) (data, other []string, err error) {
	for {
		line, e := br.ReadString('\n')
		if e != nil {
			return data, other, e
		}
		line = strings.TrimRight(line, "\n")
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			data = append(data, d)
		} else if line != "" {
			other = append(other, line)
		}
	}
}

// statelessListenUpstream is a stateless (2026-07-28) upstream whose
// subscriptions/listen streams send their acknowledgement, then a
// notification of each method in then, all tagged with the listen's id, and
// stay open until the client goes.
func statelessListenUpstream(t *testing.T, then ...string) upstream.Transport {
	us := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if m.Method != "subscriptions/listen" {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{"listChanged":true}}}}`, m.ID)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		tag := `"_meta":{"io.modelcontextprotocol/subscriptionId":` + string(m.ID) + `}`
		fmt.Fprintf(w, "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/subscriptions/acknowledged\",\"params\":{\"notifications\":{\"toolsListChanged\":true},%s}}\n\n", tag)
		for _, method := range then {
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":%q,\"params\":{%s}}\n\n", method, tag)
		}
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(us.Close)
	tr, err := upstream.NewHTTP(upstream.HTTPConfig{URL: us.URL + "/mcp", Timeout: 5 * time.Second})
	require.NoError(t, err)
	return tr
}

// TestDrainEndsStatelessListen: a drain ends a stateless client's
// subscriptions/listen stream gracefully, with the listen request's
// response, resultType "complete" (PROTOCOL.md section 2, rule 45), within
// the drain window (or at once without one), and sends no SSE retry (no
// resumption in the stateless revision: section 3, rule 7); the client
// listens again elsewhere or after the restart. It was left open through
// the drain, then cut with a retry hint and no response. A listen asked
// for during the drain gets 503 with Retry-After and its id.
func TestDrainEndsStatelessListen(t *testing.T) {
	for _, c := range []struct {
		name      string
		stateless bool // a stateless upstream, passed through; else the session pool
		window    time.Duration
		stateFile bool
	}{
		{"pool", false, 2 * time.Second, false},
		{"pool state-file", false, 2 * time.Second, true},
		{"pool no window", false, -1, false},
		{"stateless upstream", true, 2 * time.Second, false},
		{"stateless upstream no window state-file", true, -1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := gateway.Config{Upstream: testenv.NewFakeUpstream(t), DrainWindow: c.window}
			if c.stateless {
				cfg.Upstream, cfg.UpstreamEra = statelessListenUpstream(t), gateway.UpstreamEraStateless
			}
			if c.stateFile {
				cfg.StateFile = t.TempDir() + "/state"
			}
			srv, err := gateway.New(cfg)
			require.NoError(t, err)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ln) }()
			url := "http://" + ln.Addr().String() + "/mcp"
			_, br := openListen(t, url)

			shut := make(chan error, 1)
			start := time.Now()
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				shut <- srv.Shutdown(ctx)
			}()
			if c.window > 0 {
				require.Eventually(t, srv.Draining, 2*time.Second, time.Millisecond)
				body := `{"jsonrpc":"2.0","id":"L2","method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true},` + meta + `}}`
				status, b, hdr := statelessPost(t, url, body, mh("subscriptions/listen"))
				assert.Equal(t, http.StatusServiceUnavailable, status, b)
				assert.NotEmpty(t, hdr.Get("Retry-After"))
				assert.Contains(t, b, `"id":"L2"`)
			}
			data, other, _ := restOf(br)
			ended := time.Since(start)
			require.NotEmpty(t, data, "the listen ended without its response")
			last := data[len(data)-1]
			assert.Contains(t, last, `"id":"L"`)
			assert.Contains(t, last, `"resultType":"complete"`)
			for _, l := range other {
				assert.False(t, strings.HasPrefix(l, "retry:"), "a stateless stream got %q", l)
			}
			assert.Less(t, ended, max(c.window, 0)+time.Second, "ended within the drain window")
			assert.NoError(t, <-shut)
			assert.NoError(t, <-done)
		})
	}
}

// TestShutdownSendsNoRetryToStatelessRequests: a stateless request's answer
// stream cut by a shutdown ends without a retry hint (PROTOCOL.md section 3,
// rule 7: priming and retry only toward session-era clients of 2025-11-25;
// the revision has no resumption).
func TestShutdownSendsNoRetryToStatelessRequests(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	gate := testenv.NewGate("never")
	fake.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Pause(gate), testenv.Respond(`{"content":[]}`)))
	t.Cleanup(gate.Release)
	srv, err := gateway.New(gateway.Config{Upstream: fake, DrainWindow: -1})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	url := "http://" + ln.Addr().String() + "/mcp"

	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"t","arguments":{},"_meta":{"progressToken":"p",` +
		`"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range mh("tools/call", "Mcp-Name", "t") {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if strings.Contains(line, "notifications/progress") {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	require.NoError(t, <-done)
	_, other, _ := restOf(br)
	for _, l := range other {
		assert.False(t, strings.HasPrefix(l, "retry:"), "a retry hint toward a stateless client: %q", other)
	}
}
