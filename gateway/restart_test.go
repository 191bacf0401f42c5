//go:build integration

package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// restartFlags make a gateway keep its sessions in state across restarts
// on a fixed address.
func restartFlags(addr, state string, extra ...string) []string {
	return append([]string{"-listen", addr, "-state-file", state}, extra...)
}

// freshClient sends each request on a new connection: a restarted gateway
// leaves pooled connections dead, and a POST is not retried on them.
var freshClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}

// callTool calls a tool of the mock upstream on a session by a raw POST
// and returns the answer body.
func callTool(t *testing.T, url, sid, version, tool string) string {
	t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":"raw-%d","method":"tools/call","params":{"name":%q,"arguments":{}}}`, time.Now().UnixNano(), tool)
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("MCP-Protocol-Version", version)
	resp, err := freshClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	require.Contains(t, string(b), `"result"`)
	return string(b)
}

// mockCounters are the mock upstream's counters the tests read.
type mockCounters struct {
	Created int64 `json:"sessions_created"`
	Deleted int64 `json:"sessions_deleted"`
	Resumes int64 `json:"resumes"` // GETs with Last-Event-ID served
}

func readMockCounters(t *testing.T, upURL string) mockCounters {
	t.Helper()
	resp, err := freshClient.Get(strings.TrimSuffix(upURL, "/mcp") + "/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	var s mockCounters
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&s))
	return s
}

// mockStats reads the mock upstream's session counters.
func mockStats(t *testing.T, upURL string) (created, deleted int64) {
	t.Helper()
	s := readMockCounters(t, upURL)
	return s.Created, s.Deleted
}

// seqLog records the mock's per-stream sequence numbers (params._meta.seq)
// of the notifications a client handled.
type seqLog struct {
	mu      sync.Mutex
	seqs    []int
	changed chan struct{}
}

func newSeqLog() *seqLog { return &seqLog{changed: make(chan struct{})} }

func (l *seqLog) add(meta mcp.Meta) {
	seq, _ := meta["seq"].(float64)
	l.mu.Lock()
	l.seqs = append(l.seqs, int(seq))
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// waitFor waits until n notifications arrived and returns them.
func (l *seqLog) waitFor(t *testing.T, n int, d time.Duration) []int {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		got, ch := append([]int(nil), l.seqs...), l.changed
		l.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%d of %d notifications arrived within %v: %v", len(got), n, d, got)
		}
	}
}

func upTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// TestRestartKeepsSDKSession: the Go SDK client in its default
// configuration (standalone GET stream on) keeps its session across two
// gateway restarts with -state-file, and receives every notification the
// gateway had accepted before each shutdown, exactly once, in order:
//
//  1. its standalone stream is cut and its reconnect held back while three
//     notifications reach the gateway, which then restarts; the reconnect
//     (Last-Event-ID) reaches the new process and gets them from the
//     restored ring;
//  2. a plain restart with notifications just accepted: the paced drain
//     ends the stream with a retry hint that brings the client back after
//     the restart, and it resumes.
//
// The upstream session lives on (the mock saw one initialize, no DELETE).
func TestRestartKeepsSDKSession(t *testing.T) {
	bin := testenv.Env(t, "MCPGATE_GATEWAY_BIN")
	up := testenv.StartListening(t, "mock-upstream", testenv.Env(t, "MCPGATE_LOADTEST_BIN"), "upstream", "-listen", "127.0.0.1:0", "-era", "session")
	addr := testenv.FreeAddr(t)
	state := filepath.Join(t.TempDir(), "sessions.state")
	flags := restartFlags(addr, state, "-drain-window", "500ms", "-retry-hint", "300ms")
	gw := testenv.StartGateway(t, bin, up.URL, flags...)
	gwURL := gw.URL
	relay := testenv.StartRelay(t, addr)

	seqs := newSeqLog()
	cs := connect(t, "http://"+relay.Addr()+"/mcp", &mcp.ClientOptions{
		ToolListChangedHandler: func(_ context.Context, r *mcp.ToolListChangedRequest) { seqs.add(r.Params.Meta) },
	}, false)
	defer cs.Close()
	sid, version := cs.ID(), cs.InitializeResult().ProtocolVersion
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "notify"})
		require.NoError(t, err)
	}
	require.Equal(t, upTo(3), seqs.waitFor(t, 3, notifyWait))

	// 1. Cut the stream, hold the reconnect, let the gateway accept three
	// more, restart.
	require.True(t, relay.WaitLive(nil, liveWait, testenv.ConnStandalone))
	release := relay.Hold()
	defer release()
	require.Equal(t, 1, relay.Cut(testenv.ConnStandalone)[testenv.ConnStandalone])
	pushed := scrape(t, gw)["mcpgate_events_pushed_total"]
	for i := 0; i < 3; i++ {
		callTool(t, gwURL, sid, version, "notify")
	}
	waitMetric(t, gw, 10*time.Second, "the gateway stored the three notifications", func(m map[string]float64) bool {
		return m["mcpgate_events_pushed_total"] >= pushed+3
	})
	require.NoError(t, gw.Stop(30*time.Second), "an orderly exit")
	assert.FileExists(t, state)
	assert.Contains(t, gw.Stderr(), "sessions saved")
	gw = testenv.StartGateway(t, bin, up.URL, flags...)
	assert.Contains(t, gw.Stderr(), "sessions restored")
	release()
	require.Equal(t, upTo(6), seqs.waitFor(t, 6, notifyWait), "the held reconnect resumed from the restored ring")
	_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "notify"})
	require.NoError(t, err, "the session goes on through the SDK")
	require.Equal(t, upTo(7), seqs.waitFor(t, 7, notifyWait))

	// 2. A plain restart right after the gateway accepted two more.
	require.True(t, relay.WaitLive(nil, liveWait, testenv.ConnStandalone))
	pushed = scrape(t, gw)["mcpgate_events_pushed_total"]
	callTool(t, gwURL, sid, version, "notify")
	callTool(t, gwURL, sid, version, "notify")
	waitMetric(t, gw, 10*time.Second, "the gateway stored the two notifications", func(m map[string]float64) bool {
		return m["mcpgate_events_pushed_total"] >= pushed+2
	})
	require.NoError(t, gw.Stop(30*time.Second))
	gw = testenv.StartGateway(t, bin, up.URL, flags...)
	got := seqs.waitFor(t, 9, 45*time.Second) // the SDK's own backoff may add a few seconds
	require.Equal(t, upTo(9), got, "every notification once, in order")
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"size": 3}})
	require.NoError(t, err)
	assert.False(t, res.IsError)
	assert.Equal(t, sid, cs.ID())
	// The standalone stream came back to the new process: a notification
	// sent now arrives live.
	waitMetric(t, gw, 45*time.Second, "the client's standalone stream resumed", func(m map[string]float64) bool {
		return m["mcpgate_resume_hits_total"] >= 1 && m[`mcpgate_streams{kind="standalone",state="connected"}`] == 1
	})
	callTool(t, gwURL, sid, version, "notify")
	require.Equal(t, upTo(10), seqs.waitFor(t, 10, notifyWait))
	created, deleted := mockStats(t, up.URL)
	assert.Equal(t, int64(1), created, "the upstream session was re-attached, never re-initialized")
	assert.Zero(t, deleted, "and never ended")
	m := scrape(t, gw)
	assert.Equal(t, 1.0, m["mcpgate_sessions_restored_total"])
}

// TestStateFileRefusedByBinary: the binary refuses a damaged state file
// with a clear message, keeps it as .refused, and serves without sessions.
func TestStateFileRefusedByBinary(t *testing.T) {
	bin := testenv.Env(t, "MCPGATE_GATEWAY_BIN")
	up := testenv.StartListening(t, "mock-upstream", testenv.Env(t, "MCPGATE_LOADTEST_BIN"), "upstream", "-listen", "127.0.0.1:0", "-era", "session")
	state := filepath.Join(t.TempDir(), "sessions.state")
	gw := testenv.StartGateway(t, bin, up.URL, "-state-file", state)
	sid := rawSession(t, gw.URL, "2025-11-25")
	require.NoError(t, gw.Stop(30*time.Second))
	good, err := os.ReadFile(state)
	require.NoError(t, err)
	for name, content := range map[string][]byte{
		"truncated":   good[:len(good)-5],
		"bit-flipped": flip(good, len(good)/2),
		"foreign":     []byte("{}\n"),
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(state, content, 0o600))
			gw := testenv.StartGateway(t, bin, up.URL, "-state-file", state)
			require.True(t, gw.WaitStderr("state file refused", 5*time.Second), "the refusal is logged")
			assert.FileExists(t, state+".refused")
			st, body := rawPost(t, gw.URL, sid, `{"jsonrpc":"2.0","id":2,"method":"ping"}`, nil)
			assert.Equal(t, http.StatusNotFound, st, "nothing was restored: %s", body)
			m := scrape(t, gw)
			assert.Zero(t, m["mcpgate_sessions"])
			require.NoError(t, gw.Stop(30*time.Second))
			require.NoError(t, os.Remove(state))
		})
	}
}

func flip(b []byte, at int) []byte {
	c := append([]byte(nil), b...)
	c[at] ^= 0x10
	return c
}

// sigterm sends SIGTERM to a gateway.
func sigterm(t *testing.T, p *testenv.Proc) {
	t.Helper()
	require.NoError(t, p.Signal(syscall.SIGTERM))
}

// readUntilEnd reads a raw SSE stream to its end and returns the retry
// hint it carried last (ms, -1 if none).
func readUntilEnd(br *bufio.Reader) int {
	retry := -1
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return retry
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "retry: "); ok {
			fmt.Sscan(v, &retry)
		}
	}
}

// TestRestartReinitializesStdioUpstream: a stdio upstream's child dies
// with the gateway; after a restart with -state-file the Go SDK client
// keeps its session, the gateway re-initializes a new child from the
// session's cached initialize, and the client hears on its standalone
// stream that the tool list may have changed (the server declared
// listChanged).
func TestRestartReinitializesStdioUpstream(t *testing.T) {
	bin := testenv.Env(t, "MCPGATE_GATEWAY_BIN")
	server := testenv.Env(t, "MCPGATE_EVERYTHING_SERVER")
	addr := testenv.FreeAddr(t)
	state := filepath.Join(t.TempDir(), "sessions.state")
	flags := restartFlags(addr, state, "-drain-window", "300ms", "-retry-hint", "200ms")
	gw := testenv.StartGateway(t, bin, "stdio:"+server, flags...)
	changed := make(chan struct{}, 16)
	cs := connect(t, gw.URL, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed <- struct{}{} },
	}, false)
	defer cs.Close()
	ctx := context.Background()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
	require.NoError(t, err)
	assert.Contains(t, textOf(t, res), "simple text")
	require.NoError(t, cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "debug"}))
	before := children(t, gw.Cmd.Process.Pid)
	require.Len(t, before, 1, "one child for the session")
	waitMetric(t, gw, 10*time.Second, "the standalone stream is connected", func(m map[string]float64) bool {
		return m[`mcpgate_streams{kind="standalone",state="connected"}`] == 1
	})

	require.NoError(t, gw.Stop(30*time.Second))
	gw = testenv.StartGateway(t, bin, "stdio:"+server, flags...)
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_simple_text"})
	require.NoError(t, err, "the session goes on after the restart")
	assert.Contains(t, textOf(t, res), "simple text")
	after := children(t, gw.Cmd.Process.Pid)
	require.Len(t, after, 1, "a new child, re-initialized from the cached initialize")
	caps := cs.InitializeResult().Capabilities
	t.Logf("the upstream declared tools.listChanged: %v", caps.Tools != nil && caps.Tools.ListChanged)
	if caps.Tools != nil && caps.Tools.ListChanged {
		select {
		case <-changed:
		case <-time.After(45 * time.Second):
			t.Fatal("the client was not told that the tool list may have changed")
		}
	}
	assert.Contains(t, gw.Stderr(), "re-initialized a restored session's upstream")
	m := scrape(t, gw)
	assert.Equal(t, 1.0, m["mcpgate_sessions_restored_total"])
}

// TestRestartBridgedSession: a session-era client in front of a stateless
// upstream (bridged: there is no upstream session to re-attach) keeps its
// session across a restart with -state-file; the restored session is
// re-initialized through the bridge, and a legacy HTTP+SSE session, which
// does not outlive its stream, is not kept.
func TestRestartBridgedSession(t *testing.T) {
	bin := testenv.Env(t, "MCPGATE_GATEWAY_BIN")
	up := testenv.StartListening(t, "mock-upstream", testenv.Env(t, "MCPGATE_LOADTEST_BIN"), "upstream", "-listen", "127.0.0.1:0", "-era", "stateless")
	addr := testenv.FreeAddr(t)
	state := filepath.Join(t.TempDir(), "sessions.state")
	flags := restartFlags(addr, state, "-drain-window", "0")
	gw := testenv.StartGateway(t, bin, up.URL, flags...)
	sid := rawSession(t, gw.URL, "2025-11-25")
	assert.Contains(t, callTool(t, gw.URL, sid, "2025-11-25", "echo"), `"result"`)

	// A legacy session: its stream is held open over the restart.
	legacy, err := http.Get(strings.TrimSuffix(gw.URL, "/mcp") + "/sse")
	require.NoError(t, err)
	defer legacy.Body.Close()
	require.Equal(t, http.StatusOK, legacy.StatusCode)

	require.NoError(t, gw.Stop(30*time.Second), "an orderly exit")
	gw = testenv.StartGateway(t, bin, up.URL, flags...)
	require.True(t, gw.WaitStderr("sessions restored", 5*time.Second), "%s", gw.Stderr())
	assert.Contains(t, gw.Stderr(), "sessions=1", "the bridged session only: the legacy session ended with its stream")
	assert.Contains(t, callTool(t, gw.URL, sid, "2025-11-25", "echo"), `"result"`, "the session goes on after the restart")
}
