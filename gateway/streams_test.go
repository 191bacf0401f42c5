//go:build integration

package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

const streamCount = 10_000

// mockStack is the load harness's mock upstream with the gateway in front.
func mockStack(t *testing.T, flags ...string) (up, gw *testenv.Proc) {
	t.Helper()
	up = testenv.StartListening(t, "mock-upstream", testenv.Env(t, "MCPGATE_LOADTEST_BIN"), "upstream", "-listen", "127.0.0.1:0", "-era", "session")
	gw = testenv.StartGateway(t, testenv.Env(t, "MCPGATE_GATEWAY_BIN"), up.URL, flags...)
	return up, gw
}

func hostPort(t *testing.T, url string) string {
	t.Helper()
	s := strings.TrimPrefix(url, "http://")
	i := strings.IndexByte(s, '/')
	require.Positive(t, i)
	return s[:i]
}

// scrape reads the gateway's Prometheus metrics (on its admin listener)
// into name{labels} -> value.
func scrape(t *testing.T, gw *testenv.Proc) map[string]float64 {
	t.Helper()
	require.NotEmpty(t, gw.AdminURL, "the gateway's admin listener")
	resp, err := http.Get(gw.AdminURL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	return out
}

// waitMetric scrapes the gateway's metrics until ok accepts them and
// returns them; it fails the test if that takes longer than d.
func waitMetric(t *testing.T, gw *testenv.Proc, d time.Duration, what string, ok func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		m := scrape(t, gw)
		if ok(m) {
			return m
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%s: not seen in the gateway's metrics within %v", what, d)
		}
	}
}

// lostByCounters is what the gateway says it did not deliver: events that
// never got into a ring, were merged away, or were gone when a reader asked.
func lostByCounters(m map[string]float64) float64 {
	return m[`mcpgate_events_dropped_total{reason="newest"}`] + m[`mcpgate_events_dropped_total{reason="disconnect"}`] +
		m["mcpgate_events_coalesced_total"] + m["mcpgate_events_skipped_total"]
}

// TestSmallRingCountsEveryLoss: with a ring far smaller than the
// answer, cut connections and a slow client, the result still arrives
// exactly once, and the gateway's counters account for every notification
// the client did not get.
func TestSmallRingCountsEveryLoss(t *testing.T) {
	_, gw := mockStack(t, "-ring-size", "64", "-ring-bytes", "64KiB", "-drop-policy", "drop-oldest", "-retry-hint", "5ms")
	relay := testenv.StartRelay(t, hostPort(t, gw.URL))
	log, barrier := newEventLog(), newEventLog()
	cs := connect(t, "http://"+relay.Addr()+"/mcp", &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			if r.Params.ProgressToken == "barrier" {
				barrier.add(1)
				return
			}
			log.add(int(r.Params.Progress))
			if log.len()%500 == 0 {
				time.Sleep(20 * time.Millisecond) // a slow client lets the ring overflow
			}
		},
	}, true)
	defer cs.Close()
	params := &mcp.CallToolParams{Name: "stream", Arguments: map[string]any{"count": streamCount, "rate": 0}}
	params.SetProgressToken("small-ring")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cuts := startCutter(relay, cutSpec{n: 20, pause: [2]time.Duration{10 * time.Millisecond, 90 * time.Millisecond}}, 3, log.firstAdded())
	res, err := cs.CallTool(ctx, params)
	_, cutErr := cuts.finish()
	require.NoError(t, err)
	require.NoError(t, cutErr)
	require.False(t, res.IsError)

	// The client handles notifications one at a time, in arrival order: once
	// a later call's progress notification was handled, every notification
	// of this call was.
	params = &mcp.CallToolParams{Name: "stream", Arguments: map[string]any{"count": 1, "rate": 0}}
	params.SetProgressToken("barrier")
	_, err = cs.CallTool(ctx, params)
	require.NoError(t, err)
	require.True(t, barrier.waitLen(1, 10*time.Second), "the barrier call's notification was handled")

	got := log.snapshot()
	seen := map[int]bool{}
	prev := 0
	for _, v := range got {
		require.False(t, seen[v], "progress %d delivered twice", v)
		require.Greater(t, v, prev, "progress out of order")
		seen[v], prev = true, v
	}
	m := scrape(t, gw)
	lost := float64(streamCount - len(got))
	t.Logf("received %d of %d; dropped oldest=%v newest=%v coalesced=%v skipped=%v", len(got), streamCount,
		m[`mcpgate_events_dropped_total{reason="oldest"}`], m[`mcpgate_events_dropped_total{reason="newest"}`],
		m["mcpgate_events_coalesced_total"], m["mcpgate_events_skipped_total"])
	assert.Positive(t, lost, "the small ring must have dropped something")
	assert.Equal(t, lost, lostByCounters(m), "the counters equal the notifications that did not arrive")
}

// rawSession initializes a session by hand and returns its id.
func rawSession(t *testing.T, url, version string) string {
	t.Helper()
	sid := initializeAt(t, url, version)
	st, b := rawPost(t, url, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, map[string]string{"MCP-Protocol-Version": version})
	require.Equal(t, http.StatusAccepted, st, "%s", b)
	return sid
}

// openGET opens the standalone stream of a session over a raw connection
// (so the test controls reading) and returns the connection after the
// headers.
func openGET(t *testing.T, url, sid string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", hostPort(t, url))
	require.NoError(t, err)
	fmt.Fprintf(c, "GET /mcp HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nMcp-Session-Id: %s\r\n\r\n", hostPort(t, url), sid)
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, status, "200", status)
	for {
		l, err := br.ReadString('\n')
		require.NoError(t, err)
		if l == "\r\n" {
			break
		}
	}
	return c, br
}

// callPush sets the mock's push rate on a session's standalone stream.
func callPush(t *testing.T, url, sid string, rate, pad int) {
	t.Helper()
	st, b := rawPost(t, url, sid, fmt.Sprintf(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"push","arguments":{"rate":%d,"pad":%d}}}`, rate, pad),
		map[string]string{"MCP-Protocol-Version": "2025-06-18"})
	require.Equal(t, http.StatusOK, st, "%s", b)
}

// TestStalledReaderPerPolicy: one reader stops reading while its session's
// standalone stream keeps receiving; the gateway's heap stays within the
// ring budget, the counters say what happened, and another session keeps
// flowing.
func TestStalledReaderPerPolicy(t *testing.T) {
	for _, policy := range []string{"drop-oldest", "drop-newest", "disconnect"} {
		t.Run(policy, func(t *testing.T) {
			_, gw := mockStack(t, "-ring-size", "256", "-ring-bytes", "256KiB", "-drop-policy", policy, "-write-stall-timeout", "1h")
			stalled := rawSession(t, gw.URL, "2025-06-18")
			healthy := rawSession(t, gw.URL, "2025-06-18")
			sc, _ := openGET(t, gw.URL, stalled)
			defer sc.Close()
			_ = sc.(*net.TCPConn).SetReadBuffer(4096)
			hc, hr := openGET(t, gw.URL, healthy)
			defer hc.Close()
			before := scrape(t, gw)

			// 2 KiB events at 4000/s into the stalled stream for 3 s:
			// ~24 MB offered against a 256 KiB ring.
			callPush(t, gw.URL, stalled, 4000, 2048)
			callPush(t, gw.URL, healthy, 200, 64)
			var healthyEvents int
			deadline := time.Now().Add(3 * time.Second)
			_ = hc.SetReadDeadline(deadline.Add(time.Second))
			for time.Now().Before(deadline) {
				line, err := hr.ReadString('\n')
				require.NoError(t, err, "the healthy session keeps flowing")
				if strings.HasPrefix(line, "data: ") {
					healthyEvents++
				}
			}
			callPush(t, gw.URL, stalled, 0, 0)
			m := scrape(t, gw)
			assert.Greater(t, healthyEvents, 300, "healthy stream delivered at its rate")
			heapGrowth := m["go_memstats_heap_inuse_bytes"] - before["go_memstats_heap_inuse_bytes"]
			assert.Less(t, heapGrowth, float64(8<<20), "heap bounded by the ring budget (2x 256 KiB hard cap) plus socket buffers")
			switch policy {
			case "drop-oldest":
				assert.Positive(t, m[`mcpgate_events_dropped_total{reason="oldest"}`])
			case "drop-newest":
				assert.Positive(t, m[`mcpgate_events_dropped_total{reason="newest"}`])
			case "disconnect":
				assert.Positive(t, m[`mcpgate_events_dropped_total{reason="disconnect"}`])
				assert.Positive(t, m["mcpgate_slow_consumer_disconnects_total"])
			}
			t.Logf("%s: healthy events %d, heap growth %.0f KiB, metrics dropped oldest=%v newest=%v disconnect=%v cuts=%v",
				policy, healthyEvents, heapGrowth/1024, m[`mcpgate_events_dropped_total{reason="oldest"}`],
				m[`mcpgate_events_dropped_total{reason="newest"}`], m[`mcpgate_events_dropped_total{reason="disconnect"}`],
				m["mcpgate_slow_consumer_disconnects_total"])
		})
	}
}

// TestHeartbeatsAndDeadClient: heartbeats arrive at the configured interval
// on a quiet stream, and a client that vanished is detached within two
// heartbeats; the stream stays resumable.
func TestHeartbeatsAndDeadClient(t *testing.T) {
	_, gw := mockStack(t, "-heartbeat", "300ms")
	sid := rawSession(t, gw.URL, "2025-06-18")
	c, br := openGET(t, gw.URL, sid)
	var stamps []time.Time
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(stamps) < 6 {
		line, err := br.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(line, ":") && strings.TrimSpace(line) != ": ok" {
			stamps = append(stamps, time.Now())
		}
	}
	for i := 1; i < len(stamps); i++ {
		gap := stamps[i].Sub(stamps[i-1])
		assert.InDelta(t, 300, float64(gap.Milliseconds()), 150, "heartbeat gap %d", i)
	}

	// The client vanishes without a word on the wire it still reads:
	// RST on close. The gateway learns it from the next heartbeat writes,
	// and counts the stream closed.
	gone0 := scrape(t, gw)[`mcpgate_streams_closed_total{reason="client_gone"}`]
	_ = c.(*net.TCPConn).SetLinger(0)
	require.NoError(t, c.Close())
	gone := time.Now()
	waitMetric(t, gw, 3*time.Second, "the dead client's stream closed", func(m map[string]float64) bool {
		return m[`mcpgate_streams_closed_total{reason="client_gone"}`] > gone0
	})
	detached := time.Since(gone)
	assert.LessOrEqual(t, detached, 2*300*time.Millisecond+250*time.Millisecond, "detached within two heartbeats")
	t.Logf("dead client detached after %v (heartbeat 300ms)", detached)

	// The stream is free for the client's next GET.
	req, _ := http.NewRequest(http.MethodGet, gw.URL, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// TestStreamCapAndSecondStandalone: over -max-streams-per-session a new
// stream gets 429 with Retry-After; a second standalone GET takes the
// stream over from the first connection, which ends, and does not count
// against the cap twice.
func TestStreamCapAndSecondStandalone(t *testing.T) {
	_, gw := mockStack(t, "-max-streams-per-session", "2")
	sid := rawSession(t, gw.URL, "2025-06-18")
	first, firstBR := openGET(t, gw.URL, sid)
	defer first.Close()
	c, _ := openGET(t, gw.URL, sid)
	defer c.Close()
	_, err := io.Copy(io.Discard, firstBR)
	require.NoError(t, err, "the replaced connection ends cleanly")

	// One long POST answer stream (the cap counts it with the GET stream),
	// open once its first event arrived ...
	slowReq, _ := http.NewRequest(http.MethodPost, gw.URL, strings.NewReader(`{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"stream","arguments":{"count":20,"rate":10},"_meta":{"progressToken":1}}}`))
	slowReq.Header.Set("Content-Type", "application/json")
	slowReq.Header.Set("Accept", "application/json, text/event-stream")
	slowReq.Header.Set("Mcp-Session-Id", sid)
	slowReq.Header.Set("MCP-Protocol-Version", "2025-06-18")
	slowResp, err := http.DefaultClient.Do(slowReq)
	require.NoError(t, err)
	defer slowResp.Body.Close()
	require.Equal(t, http.StatusOK, slowResp.StatusCode)
	slowBody := bufio.NewReader(slowResp.Body)
	for {
		line, err := slowBody.ReadString('\n')
		require.NoError(t, err)
		if strings.HasPrefix(line, "data: ") {
			break
		}
	}
	// ... so the next one is refused.
	req2, _ := http.NewRequest(http.MethodPost, gw.URL, strings.NewReader(`{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"stream","arguments":{"count":1,"rate":0},"_meta":{"progressToken":2}}}`))
	req2.Header.Set("Content-Type", "application/json")
	req2.Header.Set("Accept", "application/json, text/event-stream")
	req2.Header.Set("Mcp-Session-Id", sid)
	resp2, err := http.DefaultClient.Do(req2)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	assert.Equal(t, http.StatusTooManyRequests, resp2.StatusCode, "%s", body)
	assert.NotEmpty(t, resp2.Header.Get("Retry-After"))
	var e struct {
		Error struct{ Code int } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(body, &e))
	assert.Equal(t, -32000, e.Error.Code)
	rest, err := io.ReadAll(slowBody)
	require.NoError(t, err)
	assert.Contains(t, string(rest), `"result"`, "the long answer completes")
}

// TestPollingWithMaxConnection: with -stream-max-connection the gateway
// closes long connections deliberately (after a retry hint) so clients
// poll; the Go SDK client resumes each time and loses nothing.
func TestPollingWithMaxConnection(t *testing.T) {
	_, gw := mockStack(t, "-stream-max-connection", "250ms", "-retry-hint", "5ms", "-ring-size", "4096")
	log := newEventLog()
	cs := connect(t, gw.URL, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			log.add(int(r.Params.Progress))
		},
	}, true)
	defer cs.Close()
	const n = 2000
	params := &mcp.CallToolParams{Name: "stream", Arguments: map[string]any{"count": n, "rate": 1000}}
	params.SetProgressToken("poll")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := cs.CallTool(ctx, params)
	require.NoError(t, err)
	require.False(t, res.IsError)
	assertExactlyOnceInOrder(t, log, n)
	m := scrape(t, gw)
	// About 2 s of streaming in 250 ms connections: several polls. On a
	// loaded machine (the race detector, other tests) each reconnect takes
	// longer and the stream is polled fewer times, so two are required.
	assert.GreaterOrEqual(t, m["mcpgate_resume_hits_total"], 2.0, "the client polled")
	assert.GreaterOrEqual(t, m[`mcpgate_streams_closed_total{reason="finished"}`], 2.0)
	t.Logf("resumes=%v", m["mcpgate_resume_hits_total"])
}
