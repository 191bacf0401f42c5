package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// liveGateway is a gateway.Server serving on a loopback port.
type liveGateway struct {
	t      *testing.T
	srv    *gateway.Server
	url    string
	logs   *testenv.Buffer
	served chan error
	down   bool
}

func startLive(t *testing.T, cfg gateway.Config) *liveGateway {
	t.Helper()
	g := &liveGateway{t: t, logs: &testenv.Buffer{}, served: make(chan error, 1)}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(g.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := gateway.New(cfg)
	require.NoError(t, err)
	g.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g.url = "http://" + ln.Addr().String() + "/mcp"
	go func() { g.served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.logs.String())
		}
		g.stop()
	})
	return g
}

func (g *liveGateway) stop() {
	if g.down {
		return
	}
	g.down = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	assert.NoError(g.t, g.srv.Shutdown(ctx))
	select {
	case err := <-g.served:
		assert.NoError(g.t, err)
	case <-ctx.Done():
		g.t.Error("Serve did not return")
	}
}

// post sends one message and returns the status, headers and body (for an
// SSE answer, the open response: the caller reads and closes it).
func (g *liveGateway) post(sid, body string) *http.Response {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.url, strings.NewReader(body))
	require.NoError(g.t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(g.t, err)
	return resp
}

func (g *liveGateway) postJSON(sid, body string) (int, string) {
	g.t.Helper()
	resp := g.post(sid, body)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (g *liveGateway) initialize() string {
	g.t.Helper()
	resp := g.post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	require.Equal(g.t, http.StatusOK, resp.StatusCode)
	sid := resp.Header.Get("Mcp-Session-Id")
	require.NotEmpty(g.t, sid)
	code, _ := g.postJSON(sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	require.Equal(g.t, http.StatusAccepted, code)
	return sid
}

// get opens a GET stream (with Last-Event-ID when last is set).
func (g *liveGateway) get(sid, last string) (*http.Response, *sseReader) {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.url, nil)
	require.NoError(g.t, err)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	if last != "" {
		req.Header.Set("Last-Event-ID", last)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(g.t, err)
	g.t.Cleanup(func() { resp.Body.Close() })
	return resp, &sseReader{t: g.t, br: bufio.NewReader(resp.Body)}
}

// sseReader reads SSE events with ids and data.
type sseReader struct {
	t  *testing.T
	br *bufio.Reader
}

type sseEvent struct{ id, data string }

// next returns the next event with data (comments, retry-only and
// priming events are skipped); ok is false at the end of the stream.
func (r *sseReader) next() (sseEvent, bool) {
	var ev sseEvent
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			return ev, false
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if ev.data != "" {
				return ev, true
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "data: "):
			ev.data += line[6:]
		}
	}
}

func (r *sseReader) want(n int) []sseEvent {
	r.t.Helper()
	var out []sseEvent
	for len(out) < n {
		ev, ok := r.next()
		require.True(r.t, ok, "the stream ended after %d of %d events", len(out), n)
		out = append(out, ev)
	}
	return out
}

func logEvent(i int) string {
	return `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":` + string(rune('0'+i)) + `}}`
}

// TestStateSurvivesRestart: with a state file, a session outlives the
// gateway: same id, its standalone stream resumes by Last-Event-ID with
// the events retained before shutdown (including those never delivered),
// new events flow again, a call the restart cut short ends with a -32603
// error in its stream, upstream ids go on counting, and the upstream
// session was neither ended nor re-opened (re-attached by id).
func TestStateSurvivesRestart(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	gate := testenv.NewGate("the call waits")
	fake.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Pause(gate), testenv.Respond(`{"content":[]}`)))
	cfg := gateway.Config{Upstream: fake.Resumable(), StateFile: filepath.Join(t.TempDir(), "state"), DrainWindow: -1}
	g1 := startLive(t, cfg)
	sid := g1.initialize()

	_, r0 := g1.get(sid, "")
	up := fake.Session(1)
	for i := 1; i <= 3; i++ {
		up.Push(logEvent(i))
	}
	got := r0.want(3)
	assert.Equal(t, "0_3", got[2].id)

	call := g1.post(sid, `{"jsonrpc":"2.0","id":"c1","method":"tools/call","params":{"name":"slow","_meta":{"progressToken":"p"}}}`)
	defer call.Body.Close()
	require.Equal(t, http.StatusOK, call.StatusCode)
	progress := (&sseReader{t: t, br: bufio.NewReader(call.Body)}).want(1)
	assert.Equal(t, "1_1", progress[0].id)
	gate.WaitReached(t)

	// Two more events while nobody reads them for sure: the reader's
	// connection may take them, but only the ring keeps them.
	up.Push(logEvent(4))
	up.Push(logEvent(5))
	fake.WaitFor(t, "the events were read", func(v *testenv.FakeView) bool { return v.StreamsIdle() })
	require.Eventually(t, func() bool { return g1.srv.Metrics().EventsPushed >= 6 }, 5*time.Second, 5*time.Millisecond)

	g1.stop()
	fi, err := os.Stat(cfg.StateFile)
	require.NoError(t, err, "the state file was written")
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	for _, r := range fake.Records() {
		assert.NotEqual(t, "close", r.Op, "the upstream session is kept for the restart")
	}

	g2 := startLive(t, cfg)
	assert.Equal(t, uint64(1), g2.srv.Metrics().SessionsRestored)
	assert.Equal(t, 1, g2.srv.Metrics().Sessions)
	_, err = os.Stat(cfg.StateFile)
	assert.ErrorIs(t, err, os.ErrNotExist, "a restored file is removed")

	resp, r0 := g2.get(sid, "0_3")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	replayed := r0.want(2)
	assert.Equal(t, []sseEvent{{"0_4", logEvent(4)}, {"0_5", logEvent(5)}}, replayed, "the retained events, with their ids")
	up.Push(logEvent(6))
	assert.Equal(t, []sseEvent{{"0_6", logEvent(6)}}, r0.want(1), "the standalone stream is fed again")

	resp, r1 := g2.get(sid, "1_1")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	cut := r1.want(1)[0]
	assert.Equal(t, "1_2", cut.id)
	assert.Contains(t, cut.data, `"id":"c1"`)
	assert.Contains(t, cut.data, `-32603`)
	assert.Contains(t, cut.data, "gateway restarted")
	_, more := r1.next()
	assert.False(t, more, "the answer stream is finished")

	fake.On("tools/list", testenv.Result(`{"tools":[]}`))
	code, body := g2.postJSON(sid, `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`)
	require.Equal(t, http.StatusOK, code, body)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":9,"result":{"tools":[]}}`, body)
	sent := fake.Sent()
	assert.Contains(t, sent[len(sent)-1], `"id":2`, "upstream ids go on from the first run's")
	var resumes, connects int
	for _, r := range fake.Records() {
		switch r.Op {
		case "resume":
			resumes++
			assert.Equal(t, 1, r.Session)
		case "connect":
			connects++
		}
	}
	assert.Equal(t, 1, resumes)
	assert.Equal(t, 1, connects, "re-attached, not re-initialized")
}

// TestStateReinitializes: an upstream that cannot re-attach sessions (a
// stdio child dies with the gateway) gets a new session from the cached
// initialize, with notifications/initialized, the client's log level and
// subscriptions replayed, and the client is told on its standalone stream
// that the tool list may have changed (the upstream declared listChanged).
func TestStateReinitializes(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	fake.On("logging/setLevel", testenv.Result(`{}`))
	fake.On("resources/subscribe", testenv.Result(`{}`))
	fake.On("tools/list", testenv.Result(`{"tools":[]}`))
	cfg := gateway.Config{Upstream: fake, StateFile: filepath.Join(t.TempDir(), "state"), DrainWindow: -1}
	g1 := startLive(t, cfg)
	sid := g1.initialize()
	code, _ := g1.postJSON(sid, `{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"debug"}}`)
	require.Equal(t, http.StatusOK, code)
	code, _ = g1.postJSON(sid, `{"jsonrpc":"2.0","id":3,"method":"resources/subscribe","params":{"uri":"file:///x"}}`)
	require.Equal(t, http.StatusOK, code)
	_, r0 := g1.get(sid, "")
	fake.Session(1).Push(logEvent(1))
	assert.Equal(t, "0_1", r0.want(1)[0].id)
	g1.stop()
	firstInit := fake.Records()[0]
	require.Equal(t, "connect", firstInit.Op)

	g2 := startLive(t, cfg)
	require.Equal(t, 1, g2.srv.Metrics().Sessions)
	resp, r := g2.get(sid, "0_1")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	ev := r.want(1)[0]
	assert.Equal(t, "0_2", ev.id)
	assert.JSONEq(t, `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`, ev.data)

	code, body := g2.postJSON(sid, `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`)
	require.Equal(t, http.StatusOK, code, body)
	var second []testenv.Record
	for _, rec := range fake.Records() {
		if rec.Session == 2 {
			second = append(second, rec)
		}
	}
	require.NotEmpty(t, second)
	assert.Equal(t, "connect", second[0].Op)
	assert.Equal(t, firstInit.Body, second[0].Body, "the cached initialize, as first forwarded")
	var sends []string
	for _, rec := range second {
		if rec.Op == "send" {
			sends = append(sends, rec.Body)
		}
	}
	require.GreaterOrEqual(t, len(sends), 4, "%v", sends)
	assert.JSONEq(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, sends[0])
	assert.Contains(t, sends[1], `"method":"logging/setLevel","params":{"level":"debug"}`)
	assert.Contains(t, sends[2], `"method":"resources/subscribe","params":{"uri":"file:///x"}`)
	assert.Contains(t, sends[3], `"method":"tools/list"`)
}

// TestStateFileRefused: a truncated, bit-flipped or foreign state file is
// refused with a message saying which, kept as <file>.refused, and the
// gateway starts empty; nothing of it is restored.
func TestStateFileRefused(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	dir := t.TempDir()
	cfg := gateway.Config{Upstream: fake.Resumable(), StateFile: filepath.Join(dir, "state"), DrainWindow: -1}
	g := startLive(t, cfg)
	for i := 0; i < 3; i++ {
		g.initialize()
	}
	g.stop()
	good, err := os.ReadFile(cfg.StateFile)
	require.NoError(t, err)

	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x08
	for name, c := range map[string]struct {
		content []byte
		says    string
	}{
		"truncated":   {good[:len(good)*2/3], "truncated state file"},
		"bit-flipped": {flipped, "corrupt state file"},
		"foreign":     {[]byte(`{"sessions": ["not", "ours"]}`), "not an mcpgate state file"},
		"empty":       {[]byte{}, "not an mcpgate state file"},
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(cfg.StateFile, c.content, 0o600))
			g := startLive(t, cfg)
			assert.Zero(t, g.srv.Metrics().Sessions, "started empty")
			assert.Zero(t, g.srv.Metrics().SessionsRestored)
			log := g.logs.String()
			assert.Contains(t, log, "state file refused: starting without sessions")
			assert.Contains(t, log, c.says)
			kept, err := os.ReadFile(cfg.StateFile + ".refused")
			require.NoError(t, err)
			assert.Equal(t, c.content, kept, "the refused file is kept for inspection")
			g.stop()
			require.NoError(t, os.Remove(cfg.StateFile), "the next shutdown wrote a fresh file")
		})
	}

	// The good file restores all three.
	require.NoError(t, os.WriteFile(cfg.StateFile, good, 0o600))
	g = startLive(t, cfg)
	assert.Equal(t, 3, g.srv.Metrics().Sessions)
}

// TestStateForgottenUpstream: a restored session whose upstream forgot it
// ends at its first request (the client gets 404 and starts over), as any
// session whose upstream lost it.
func TestStateForgottenUpstream(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	cfg := gateway.Config{Upstream: fake.Resumable(), StateFile: filepath.Join(t.TempDir(), "state"), DrainWindow: -1}
	g1 := startLive(t, cfg)
	sid := g1.initialize()
	g1.stop()
	// The upstream restarted too: the same fake, without its sessions.
	fake2 := testenv.NewFakeUpstream(t)
	cfg.Upstream = fake2.Resumable()
	g2 := startLive(t, cfg)
	code, body := g2.postJSON(sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	assert.Equal(t, http.StatusNotFound, code, body)
	var e struct {
		Error struct{ Code int } `json:"error"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &e))
	assert.Equal(t, -32001, e.Error.Code)
}

func TestRestoreAfterServeRefused(t *testing.T) {
	g := startLive(t, gateway.Config{Upstream: testenv.NewFakeUpstream(t), DrainWindow: -1})
	g.initialize()
	_, err := g.srv.Restore(strings.NewReader(""))
	assert.Error(t, err)
	var buf bytes.Buffer
	require.NoError(t, g.srv.SaveState(&buf), "SaveState works on a running server (a snapshot)")
	s2, err := gateway.New(gateway.Config{Upstream: testenv.NewFakeUpstream(t).Resumable()})
	require.NoError(t, err)
	defer s2.Shutdown(context.Background())
	n, err := s2.Restore(&buf)
	require.NoError(t, err)
	assert.Equal(t, 0, n, "saved without a state file: no resumable upstream, no cached initialize: dropped, not fatal")
}

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }

// TestStateFileDirectoryNotWritable: a state file the gateway could not
// write is refused at start, saying so, rather than found out at the
// shutdown, when every session is lost with it.
func TestStateFileDirectoryNotWritable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("/proc, where nobody can create a file, root included, is Linux's")
	}
	fake := testenv.NewFakeUpstream(t)
	srv, err := gateway.New(gateway.Config{Upstream: fake, StateFile: "/proc/mcpgate-state", DrainWindow: -1})
	if err == nil {
		_ = srv.Shutdown(context.Background())
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), `state file "/proc/mcpgate-state": its directory is not writable`)
}

// TestStateFileOneGateway: a second gateway given the state file of one
// that runs is refused at start. Sharing it, each would restore the
// other's sessions, and at shutdown the last one to write would silently
// replace the sessions the other saved.
func TestStateFileOneGateway(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	cfg := gateway.Config{Upstream: fake.Resumable(), StateFile: filepath.Join(t.TempDir(), "state"), DrainWindow: -1}
	first, err := gateway.New(cfg)
	require.NoError(t, err)
	second, err := gateway.New(cfg)
	if err == nil {
		_ = second.Shutdown(context.Background())
	}
	require.Error(t, err, "the state file is in use")
	assert.Contains(t, err.Error(), "in use by another gateway")
	require.NoError(t, first.Shutdown(context.Background()))
	third, err := gateway.New(cfg)
	require.NoError(t, err, "free again once the first one stopped")
	require.NoError(t, third.Shutdown(context.Background()))
}

// TestStateFileNotWrittenEndsUpstream: when the state file cannot be
// written at shutdown (a full disk, a volume gone), nothing will re-attach
// the upstream sessions the shutdown kept for it: they are ended, as
// without a state file, not left open on the upstream.
func TestStateFileNotWrittenEndsUpstream(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	dir := filepath.Join(t.TempDir(), "volume")
	require.NoError(t, os.Mkdir(dir, 0o700))
	cfg := gateway.Config{Upstream: fake.Resumable(), StateFile: filepath.Join(dir, "state"), DrainWindow: -1}
	g := startLive(t, cfg)
	g.initialize()
	require.NoError(t, os.RemoveAll(dir))

	g.down = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := g.srv.Shutdown(ctx)
	require.Error(t, err, "the sessions were not saved")
	assert.Contains(t, err.Error(), "state file")
	require.NoError(t, <-g.served)
	var closed bool
	for _, r := range fake.Records() {
		closed = closed || r.Op == "close"
	}
	assert.True(t, closed, "the upstream session was ended")
	assert.Contains(t, g.logs.String(), "sessions not saved")
}
