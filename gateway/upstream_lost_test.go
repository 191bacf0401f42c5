package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// TestUpstreamGoneMidCallEndsSession: the upstream side of a session is
// found gone during a call (its answer stream ends with ErrSessionGone: a
// resume GET got 404, a stdio child exited, a legacy upstream's SSE stream
// ended). The call gets -32603 and the session ends then (PROTOCOL.md
// section 3 rule 5), not at the client's next request: its standalone
// stream ends, so an idle client holding it open learns at once (its
// reconnecting GET gets 404), and later requests get 404.
func TestUpstreamGoneMidCallEndsSession(t *testing.T) {
	const call = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow"}}`
	t.Run("answer stream", func(t *testing.T) {
		fake := testenv.NewFakeUpstream(t)
		fake.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Cut(upstream.ErrSessionGone)))
		s, url := liveServer(t, Config{Upstream: fake, WholeAnswerWindow: -1})
		sid := liveSession(t, url)
		stream := testenv.DialStream(t, url, sid, "")
		fake.WaitFor(t, "the standalone stream is open upstream", func(v *testenv.FakeView) bool { return v.Count("listen") == 1 })

		code, _, body := mcpPost(t, url, sid, call)
		require.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, `"code":-32603`, "the call gets its error")
		stream.Ended(t) // the session ended: its standalone stream with it
		assertUpstreamGone(t, s, url, sid)
	})
	t.Run("legacy client", func(t *testing.T) {
		fake := testenv.NewFakeUpstream(t)
		fake.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Cut(upstream.ErrSessionGone)))
		s, url := liveServer(t, Config{Upstream: fake, WholeAnswerWindow: -1})
		_, br, msgURL := openLegacyStream(t, strings.TrimSuffix(url, "/mcp"))
		code, _, body := mcpPost(t, msgURL, "", `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
		require.Equal(t, http.StatusAccepted, code, body)
		code, _, body = mcpPost(t, msgURL, "", `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
		require.Equal(t, http.StatusAccepted, code, body)

		code, _, body = mcpPost(t, msgURL, "", call)
		require.Equal(t, http.StatusAccepted, code, body)
		rest, err := io.ReadAll(br) // the stream ends with the session
		require.NoError(t, err, "the stream stayed open: %s", rest)
		assert.Contains(t, string(rest), `"id":2,"error":{"code":-32603`, "the call gets its error before the stream ends")
		assert.Eventually(t, func() bool { return s.Metrics().SessionsClosed["upstream_gone"] == 1 }, 5*time.Second, 10*time.Millisecond)
		code, _, body = mcpPost(t, msgURL, "", `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
		assert.Equal(t, http.StatusNotFound, code, "a later message: %s", body)
	})
	t.Run("transient break", func(t *testing.T) {
		// An answer stream that breaks for another reason (the upstream
		// unreachable, a timeout) says nothing of the session: it stays.
		fake := testenv.NewFakeUpstream(t)
		fake.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Cut(upstream.ErrUnavailable)))
		fake.On("tools/list", testenv.Result(`{"tools":[]}`))
		s, url := liveServer(t, Config{Upstream: fake, WholeAnswerWindow: -1})
		sid := liveSession(t, url)
		code, _, body := mcpPost(t, url, sid, call)
		require.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, `"code":-32603`, "the call gets its error")
		code, _, body = mcpPost(t, url, sid, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
		assert.Equal(t, http.StatusOK, code, "the session goes on: %s", body)
		assert.Zero(t, s.Metrics().SessionsClosed["upstream_gone"])
	})
	t.Run("stdio child exits", func(t *testing.T) {
		// The child answers initialize, takes notifications/initialized,
		// then exits on the next message (the call).
		tr, err := upstream.NewStdio(upstream.StdioConfig{
			Command: "/bin/sh",
			Args: []string{"-c", `read -r l; echo '{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"sh","version":"1"}}}'; ` +
				`while read -r l; do case "$l" in *'"id"'*) exit 0;; esac; done`},
			Logger: slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = tr.Close() })
		s, url := liveServer(t, Config{Upstream: tr, WholeAnswerWindow: -1})
		sid := liveSession(t, url)
		code, _, body := mcpPost(t, url, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
		require.Equal(t, http.StatusAccepted, code, body)

		code, _, body = mcpPost(t, url, sid, call)
		require.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, `"code":-32603`, "the call gets its error")
		assertUpstreamGone(t, s, url, sid)
	})
}

// assertUpstreamGone checks that session sid ended because its upstream
// lost it, without a further request of the client's, and that it is then
// unknown: a GET and a POST get 404.
func assertUpstreamGone(t *testing.T, s *Server, url, sid string) {
	t.Helper()
	assert.Eventually(t, func() bool { return s.Metrics().SessionsClosed["upstream_gone"] == 1 },
		5*time.Second, 10*time.Millisecond, "the session ends once its upstream side is known gone")
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := liveClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "a reconnecting GET")
	code, _, body := mcpPost(t, url, sid, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`)
	assert.Equal(t, http.StatusNotFound, code, "a later request: %s", strings.TrimSpace(body))
}
