package gateway

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/sessionrec"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// TestClusterForwardedAnswerLostInStoreDoesNotHang: a call forwarded to
// the session's owner whose streamed answer JetStream fails to store (a
// short outage while the owner relays it) gets an answer, an error if
// need be, once the store is back: the forwarding node never waits for
// ever for a relay whose events and end were lost while its owner lives.
func TestClusterForwardedAnswerLostInStoreDoesNotHang(t *testing.T) {
	fnet := newFakeNet()
	upA := testenv.NewFakeUpstream(t).On("tools/call", testenv.Stream(testenv.Respond(`{"content":[]}`)))
	_, urlA := fakeClusterServer(t, fnet, "a", upA, Config{})
	_, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{})
	sid := liveSession(t, urlA)

	var outage atomic.Bool
	outage.Store(true)
	fnet.mu.Lock()
	fnet.refuse = func(ev *sessionrec.Published) bool { return ev.Stream&relayBit != 0 && outage.Load() }
	fnet.mu.Unlock()
	time.AfterFunc(500*time.Millisecond, func() { outage.Store(false) })

	type result struct {
		code int
		body string
	}
	got := make(chan result, 1)
	go func() {
		code, _, body := mcpPostNoFail(urlB, sid, `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{}}}`)
		got <- result{code, body}
	}()
	select {
	case r := <-got:
		require.Equal(t, http.StatusOK, r.code, r.body)
		assert.Contains(t, r.body, `"id":7`)
	case <-time.After(8 * time.Second):
		t.Fatal("the forwarded call got no answer 7.5 s after the store came back")
	}
}

// gatedStream is a call's answer stream (as stdio's, with NextWithin)
// whose messages come once open is closed.
type gatedStream struct {
	open   <-chan struct{}
	msgs   []string
	closed chan struct{}
	once   sync.Once
}

func (g *gatedStream) Next() ([]byte, error) {
	select {
	case <-g.open:
	case <-g.closed:
		return nil, io.EOF
	}
	if len(g.msgs) == 0 {
		return nil, io.EOF
	}
	m := g.msgs[0]
	g.msgs = g.msgs[1:]
	return []byte(m), nil
}

func (g *gatedStream) NextWithin(d time.Duration) ([]byte, bool, error) {
	select {
	case <-g.open:
	case <-g.closed:
	case <-time.After(d):
		return nil, false, nil
	}
	m, err := g.Next()
	return m, true, err
}

func (g *gatedStream) Close() error { g.once.Do(func() { close(g.closed) }); return nil }

// TestClusterForwardedQuickAnswerIsJSON: a call to an upstream that
// answers with a stream of the call's messages (stdio, legacy HTTP+SSE)
// whose response comes at once is answered with JSON on the owner
// (earlyanswer.go), and so it is when the call lands on another node and
// is forwarded (the owner's relay is read within the same window). A
// response that comes later is streamed, on either node, with event ids
// to resume by.
func TestClusterForwardedQuickAnswerIsJSON(t *testing.T) {
	open := make(chan struct{})
	tr := &scriptTransport{version: "2025-06-18"}
	tr.send = func(body []byte) (*upstream.Reply, error) {
		var p jsonrpc.Parser
		msgs, _, perr := p.Parse(body)
		if perr != nil || msgs[0].Kind != jsonrpc.KindRequest {
			return &upstream.Reply{Accepted: true}, nil
		}
		answer := `{"jsonrpc":"2.0","id":` + string(msgs[0].ID) + `,"result":{"tools":[{"name":"answered"}]}}`
		g := &gatedStream{open: open, msgs: []string{answer}, closed: make(chan struct{})}
		if string(msgs[0].Method) == "tools/list" {
			g.open = closedChan // answered at once
		}
		return &upstream.Reply{Stream: g}, nil
	}
	fnet := newFakeNet()
	_, urlA := liveServer(t, Config{Cluster: fnet.node("a"), Upstream: tr})
	_, urlB := liveServer(t, Config{Cluster: fnet.node("b"), Upstream: &scriptTransport{version: "2025-06-18"}})
	sid := liveSession(t, urlA)
	code, _, body := mcpPost(t, urlA, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	require.Equal(t, http.StatusAccepted, code, body)

	post := func(url, body string) (int, string, string) {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", sid)
		resp, err := liveClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	for _, node := range []struct{ name, url string }{{"owner", urlA}, {"forwarded", urlB}} {
		code, ctype, body := post(node.url, `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`)
		require.Equal(t, http.StatusOK, code, "%s: %s", node.name, body)
		assert.Equal(t, "application/json", ctype, "%s: a quick single response is JSON: %s", node.name, body)
		assert.JSONEq(t, `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"answered"}]}}`, body, node.name)
	}

	// A response that comes after the window is streamed, resumable.
	time.AfterFunc(300*time.Millisecond, func() { close(open) })
	code, ctype, body := post(urlB, `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"x"}}`)
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, "text/event-stream", ctype, body)
	assert.Contains(t, body, `"id":8`)
	assert.Regexp(t, `(?m)^id: \d+_\d+$`, body, "events carry ids to resume by")
}

// closedChan is a channel that is always ready.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
