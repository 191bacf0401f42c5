package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

var cluEndpointID = regexp.MustCompile(`sessionId=([0-9a-f]+)`)

// cluLegacyOpen opens a legacy session on base (GET /sse as token's
// principal) and returns its id, the data of each message event as it
// arrives (closed when the stream ends) and a function closing the stream.
func cluLegacyOpen(t *testing.T, base, token string) (string, <-chan string, func()) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/sse", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	require.NoError(t, err)
	closeStream := func() { _ = resp.Body.Close() }
	t.Cleanup(closeStream)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	r := bufio.NewReader(resp.Body)
	next := func() (event, data string, err error) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return "", "", err
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case line == "":
				if event != "" || data != "" {
					return event, data, nil
				}
			case strings.HasPrefix(line, "event: "):
				event = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				data += line[len("data: "):]
			}
		}
	}
	ev, data, err := next()
	require.NoError(t, err)
	require.Equal(t, "endpoint", ev)
	m := cluEndpointID.FindStringSubmatch(data)
	require.NotNil(t, m, "endpoint event: %q", data)
	msgs := make(chan string, 64)
	// The reader ends with the stream (closeStream, or the gateway's end
	// of it, at the latest when the test's servers shut down).
	go func() {
		defer close(msgs)
		for {
			ev, data, err := next()
			if err != nil {
				return
			}
			if ev == "message" {
				msgs <- data
			}
		}
	}()
	return m[1], msgs, closeStream
}

// cluLegacyPost POSTs body to base's message path for session sid as
// token's principal and returns the status and the body.
func cluLegacyPost(t *testing.T, base, sid, token, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/messages?sessionId="+sid, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := liveClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// nextLegacyMessage waits for the stream's next message.
func nextLegacyMessage(t *testing.T, msgs <-chan string) string {
	t.Helper()
	select {
	case m, ok := <-msgs:
		require.True(t, ok, "the legacy stream ended")
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message on the legacy stream within 5 s")
		return ""
	}
}

// TestClusterLegacyMessagesOnAnyNode: a legacy HTTP+SSE client's stream is
// on node a; its POSTs, which the balancer sends to node b, reach the
// session on a and are answered as a would answer them (202, 400, 415),
// their answers arriving on a's stream. Another principal gets 404 on
// either node, so does the session's id on /mcp; once the stream closed,
// the registry entry is gone and every node answers 404.
func TestClusterLegacyMessagesOnAnyNode(t *testing.T) {
	fnet := newFakeNet()
	upA := testenv.NewFakeUpstream(t).On("tools/call", testenv.Result(`{"content":[{"type":"text","text":"from a's upstream"}]}`))
	// Frequent heartbeats: a write finds the closed stream soon. A short
	// idle timeout: activity is written every 250 ms.
	cfg := Config{Authenticator: testenv.TwoPrincipals{}, Heartbeat: 50 * time.Millisecond, SessionIdleTimeout: 2 * time.Second}
	_, urlA := fakeClusterServer(t, fnet, "a", upA, cfg)
	_, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), cfg)
	baseA, baseB := strings.TrimSuffix(urlA, "/mcp"), strings.TrimSuffix(urlB, "/mcp")

	sid, msgs, closeStream := cluLegacyOpen(t, baseA, "alice-token")
	require.True(t, fnet.has(sid), "the legacy session is registered before its endpoint event")
	reg := fnet.node("reader")
	rec, owner, _, rev, err := reg.LoadSession(context.Background(), sid)
	require.NoError(t, err)
	require.NotNil(t, rec)
	assert.Equal(t, "a", owner)
	assert.True(t, rec.LegacyClient)
	assert.Equal(t, "alice", rec.Principal)
	assert.Empty(t, rec.Version, "no version: a node that does not know the marker finds nothing to serve")
	// While its stream is open the owner keeps writing the entry's
	// activity (its TTL in NATS), and the entry stays a legacy one.
	require.Eventually(t, func() bool {
		rec, _, _, cur, err := reg.LoadSession(context.Background(), sid)
		return err == nil && rec != nil && rec.LegacyClient && cur > rev
	}, 5*time.Second, 20*time.Millisecond, "activity written")

	post := func(base, token, body string) (int, string) {
		return cluLegacyPost(t, base, sid, token, "application/json", body)
	}
	code, body := post(baseB, "alice-token", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	require.Equal(t, http.StatusAccepted, code, body)
	m := nextLegacyMessage(t, msgs)
	assert.Contains(t, m, `"id":1`)
	assert.Contains(t, m, `"result"`)

	code, body = post(baseB, "alice-token", `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	require.Equal(t, http.StatusAccepted, code, body)
	code, body = post(baseB, "alice-token", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","arguments":{}}}`)
	require.Equal(t, http.StatusAccepted, code, body)
	m = nextLegacyMessage(t, msgs)
	assert.Contains(t, m, `"id":2`)
	assert.Contains(t, m, "from a's upstream", "the call went to the upstream session a holds")
	code, body = post(baseB, "alice-token", `{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	require.Equal(t, http.StatusAccepted, code, body)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":3,"result":{}}`, nextLegacyMessage(t, msgs))

	// The owner's refusals come back as they are.
	code, body = post(baseB, "alice-token", `{"jsonrpc":"2.0","id":4,`)
	assert.Equal(t, http.StatusBadRequest, code, body)
	assert.Contains(t, body, "-32700", "a parse error, as the owner answers it")
	code, body = post(baseB, "alice-token", `{"jsonrpc":"2.0","id":5,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	assert.Equal(t, http.StatusBadRequest, code, body)
	assert.Contains(t, body, "initialized already")
	code, body = cluLegacyPost(t, baseB, sid, "alice-token", "text/plain", `{}`)
	assert.Equal(t, http.StatusUnsupportedMediaType, code, body)

	// Another principal: no such session, on either node.
	for _, base := range []string{baseA, baseB} {
		code, body = post(base, "bob-token", `{"jsonrpc":"2.0","id":6,"method":"ping"}`)
		assert.Equal(t, http.StatusNotFound, code, "%s: %s", base, body)
	}
	// On /mcp a legacy session does not exist, on any node.
	for _, u := range []string{urlA, urlB} {
		req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"ping"}`))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("Authorization", "Bearer alice-token")
		resp, err := liveClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, u)
	}

	// The stream's end ends the session: its entry leaves the registry,
	// and every node answers 404.
	closeStream()
	require.Eventually(t, func() bool { return !fnet.has(sid) }, 5*time.Second, 10*time.Millisecond, "the entry goes with the session")
	assert.Zero(t, fnet.entryCount(), "nothing left in the registry")
	for _, base := range []string{baseA, baseB} {
		code, body = post(base, "alice-token", `{"jsonrpc":"2.0","id":8,"method":"ping"}`)
		assert.Equal(t, http.StatusNotFound, code, "%s: %s", base, body)
	}
}

// TestClusterLegacyOwnerGone: when the node holding a legacy session's
// stream dies, a POST for the session on another node is 404 (the
// transport has no resumption: the stream went with its node).
func TestClusterLegacyOwnerGone(t *testing.T) {
	fnet := newFakeNet()
	_, urlA := fakeClusterServer(t, fnet, "a", testenv.NewFakeUpstream(t), Config{})
	_, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{})
	baseA, baseB := strings.TrimSuffix(urlA, "/mcp"), strings.TrimSuffix(urlB, "/mcp")

	sid, msgs, _ := cluLegacyOpen(t, baseA, "")
	code, body := cluLegacyPost(t, baseB, sid, "", "application/json", `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	require.Equal(t, http.StatusAccepted, code, body)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{}}`, nextLegacyMessage(t, msgs), "a ping before initialize is answered by the owner")

	fnet.crash("a")
	code, body = cluLegacyPost(t, baseB, sid, "", "application/json", `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	assert.Equal(t, http.StatusNotFound, code, body)
}

// TestClusterLegacyShutdownForgets: a node's shutdown ends its legacy
// sessions with their streams (they cannot be handed over), and their
// registry entries go with them.
func TestClusterLegacyShutdownForgets(t *testing.T) {
	fnet := newFakeNet()
	sA, urlA := fakeClusterServer(t, fnet, "a", testenv.NewFakeUpstream(t), Config{})
	fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{})

	sid, msgs, _ := cluLegacyOpen(t, strings.TrimSuffix(urlA, "/mcp"), "")
	require.True(t, fnet.has(sid))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, sA.Shutdown(ctx))
	assert.False(t, fnet.has(sid), "the entry went with the session")
	for range msgs { // the stream ended
	}
}

// TestLegacyForwardEncoding: the "legacy" request and its answer survive
// the trip, and truncated ones are refused, never misread.
func TestLegacyForwardEncoding(t *testing.T) {
	b := appendLegacyForward(nil, "0123456789abcdef0123456789abcdef", "al\nice", []byte("application/json"), nil, []byte(`{"a":1}`))
	f, ok := decodeLegacyForward(b)
	require.True(t, ok)
	assert.Equal(t, "0123456789abcdef0123456789abcdef", f.sid)
	assert.Equal(t, "al\nice", f.principal)
	assert.Equal(t, "application/json", string(f.contentType))
	assert.Empty(t, f.auth)
	assert.Equal(t, `{"a":1}`, string(f.body))
	for i := 0; i < len(b)-len(`{"a":1}`); i++ {
		_, ok := decodeLegacyForward(b[:i])
		assert.False(t, ok, "cut at %d", i)
	}

	a := appendLegacyAnswer(nil, 503, []byte("1"), []byte("application/json"), []byte(`{"e":1}`))
	ans, ok := decodeLegacyAnswer(a)
	require.True(t, ok)
	assert.Equal(t, 503, ans.status)
	assert.Equal(t, "1", string(ans.retryAfter))
	assert.Equal(t, "application/json", string(ans.contentType))
	assert.Equal(t, `{"e":1}`, string(ans.body))
	for i := 0; i < len(a)-len(`{"e":1}`); i++ {
		_, ok := decodeLegacyAnswer(a[:i])
		assert.False(t, ok, "cut at %d", i)
	}
	_, ok = decodeLegacyAnswer(appendLegacyAnswer(nil, 42, nil, nil, nil))
	assert.False(t, ok, "not an HTTP status")

	// A pending answer is no answer, and an answer is not pending.
	p := appendLegacyPending(nil, 300)
	ticket, pending := decodeLegacyPending(p)
	assert.True(t, pending)
	assert.Equal(t, uint64(300), ticket)
	_, ok = decodeLegacyAnswer(p)
	assert.False(t, ok, "a pending answer is not an answer")
	for i := range len(p) {
		_, pending := decodeLegacyPending(p[:i])
		assert.False(t, pending, "cut at %d", i)
	}
	_, pending = decodeLegacyPending(a)
	assert.False(t, pending, "an answer is not pending")
	ticket, sid, ok := decodeLegacyWait(appendLegacyWait(nil, 300, "0123456789abcdef0123456789abcdef"))
	require.True(t, ok)
	assert.Equal(t, uint64(300), ticket)
	assert.Equal(t, "0123456789abcdef0123456789abcdef", sid)
	_, _, ok = decodeLegacyWait(nil)
	assert.False(t, ok)
}

// TestClusterLegacySlowMessageForwarded: a legacy message whose handling
// on the node holding the stream outlasts a node-to-node request (a slow
// initialize, a slow call) is answered on the node the balancer sent it
// to as on the owner: 202 once the owner handled it (not before, and not
// 504 at the request timeout), its answer on the stream; an error the
// owner answers after a slow handling comes back with the same status and
// body as on the owner.
func TestClusterLegacySlowMessageForwarded(t *testing.T) {
	fnet := newFakeNet()
	fnet.timeout = 400 * time.Millisecond
	slow := 3 * fnet.timeout // well past the request timeout
	localFail, fwdFail, initGate, callGate := testenv.NewGate("local failing initialize"), testenv.NewGate("forwarded failing initialize"),
		testenv.NewGate("initialize"), testenv.NewGate("tools/call")
	failed := fmt.Errorf("upstream refused: %w", upstream.ErrUnavailable)
	upA := testenv.NewFakeUpstream(t).
		OnConnect(testenv.Fail(failed).After(localFail), testenv.Fail(failed).After(fwdFail), testenv.Negotiated().After(initGate)).
		On("tools/call", testenv.Result(`{"content":[{"type":"text","text":"slow"}]}`).After(callGate))
	sA, urlA := fakeClusterServer(t, fnet, "a", upA, Config{})
	_, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{})
	baseA, baseB := strings.TrimSuffix(urlA, "/mcp"), strings.TrimSuffix(urlB, "/mcp")

	type answer struct {
		code int
		body string
	}
	// slowPost POSTs body to base while gate holds its handling on the
	// owner past the request timeout, checks nothing was answered before
	// the gate opened, and returns the answer.
	slowPost := func(base, sid string, gate *testenv.Gate, body string) answer {
		t.Helper()
		got := make(chan answer, 1)
		go func() {
			req, err := http.NewRequest(http.MethodPost, base+"/messages?sessionId="+sid, strings.NewReader(body))
			if err != nil {
				got <- answer{0, err.Error()}
				return
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := slowLiveClient.Do(req)
			if err != nil {
				got <- answer{0, err.Error()}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			got <- answer{resp.StatusCode, string(b)}
		}()
		gate.WaitReached(t)
		select {
		case a := <-got:
			t.Fatalf("answered %d before the owner handled the message: %s", a.code, a.body)
		case <-time.After(slow):
		}
		gate.Release()
		select {
		case a := <-got:
			return a
		case <-time.After(10 * time.Second):
			t.Fatal("no answer 10 s after the owner handled the message")
			return answer{}
		}
	}
	const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

	// A slow initialize that fails: the owner's error, whichever node
	// took the POST.
	localSid, _, _ := cluLegacyOpen(t, baseA, "")
	local := slowPost(baseA, localSid, localFail, initialize)
	require.GreaterOrEqual(t, local.code, 400, local.body)
	sid, msgs, _ := cluLegacyOpen(t, baseA, "")
	fwd := slowPost(baseB, sid, fwdFail, initialize)
	assert.Equal(t, local, fwd, "the forwarded answer is the owner's")

	// A slow initialize that succeeds, then a slow call: 202 once done,
	// the answers on the stream.
	a := slowPost(baseB, sid, initGate, initialize)
	require.Equal(t, http.StatusAccepted, a.code, a.body)
	m := nextLegacyMessage(t, msgs)
	assert.Contains(t, m, `"id":1`)
	assert.Contains(t, m, `"result"`)
	code, body := cluLegacyPost(t, baseB, sid, "", "application/json", `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	require.Equal(t, http.StatusAccepted, code, body)
	a = slowPost(baseB, sid, callGate, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","arguments":{}}}`)
	require.Equal(t, http.StatusAccepted, a.code, a.body)
	m = nextLegacyMessage(t, msgs)
	assert.Contains(t, m, `"id":2`)
	assert.Contains(t, m, `"slow"`)

	// Quick messages and refusals are still answered at once, as before.
	code, body = cluLegacyPost(t, baseB, sid, "", "application/json", `{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	require.Equal(t, http.StatusAccepted, code, body)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":3,"result":{}}`, nextLegacyMessage(t, msgs))
	code, body = cluLegacyPost(t, baseB, sid, "", "application/json", `{"jsonrpc":"2.0","id":4,`)
	assert.Equal(t, http.StatusBadRequest, code, body)
	assert.Contains(t, body, "-32700")

	// Every answer was taken: the owner keeps none.
	l := &sA.clu.legacy
	assert.Eventually(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return len(l.runs) == 0 },
		time.Second, 10*time.Millisecond, "forwarded legacy messages left on the owner")
}
