//go:build integration

package gateway_test

// Scale-out (issue 16): three bin/gateway nodes on one NATS server with
// JetStream (the nats-server binary built from the Go module), behind
// HAProxy balancing round-robin without stickiness, so every request may
// land on another node. The official clients in their default
// configurations connect through a relay (which cuts their connections) in
// front of the balancer.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// sum adds a metric over the live nodes.
func (s *clusterStack) sum(t *testing.T, name string) float64 {
	t.Helper()
	total := 0.0
	for _, gw := range s.nodes {
		if gw.Exited() {
			continue
		}
		total += scrape(t, gw)[name]
	}
	return total
}

// logMetrics logs the stream and cluster metrics of every live node (for a
// failure's diagnosis).
func (s *clusterStack) logMetrics(t *testing.T) {
	for i, gw := range s.nodes {
		if gw.Exited() {
			continue
		}
		var lines []string
		for k, v := range scrape(t, gw) {
			if v != 0 && (strings.Contains(k, "stream") || strings.Contains(k, "cluster") || strings.Contains(k, "resume")) && !strings.Contains(k, "bucket") {
				lines = append(lines, fmt.Sprintf("%s=%v", k, v))
			}
		}
		t.Logf("node n%d: %s", i+1, strings.Join(lines, " "))
	}
}

// lost adds lostByCounters over the live nodes.
func (s *clusterStack) lost(t *testing.T) float64 {
	total := 0.0
	for _, gw := range s.nodes {
		if !gw.Exited() {
			total += lostByCounters(scrape(t, gw))
		}
	}
	return total
}

// producer returns the node publishing events fastest now (the one
// reading the call's upstream answer), or -1. Any goroutine may call it.
func (s *clusterStack) producer(t *testing.T) int {
	const name = "mcpgate_cluster_events_published_total"
	read := func(gw *testenv.Proc) float64 {
		resp, err := http.Get(gw.AdminURL + "/metrics")
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				return f
			}
		}
		return 0
	}
	before := make([]float64, len(s.nodes))
	for i, gw := range s.nodes {
		before[i] = read(gw)
	}
	time.Sleep(300 * time.Millisecond) // a sampling interval, not a wait for a condition
	best, bestGrowth := -1, 0.0
	for i, gw := range s.nodes {
		if g := read(gw) - before[i]; g > bestGrowth {
			best, bestGrowth = i, g
		}
	}
	return best
}

// disruption stops the node producing the call's events once after
// progress values arrived: with SIGKILL (it dies) or SIGTERM (it drains,
// handing its sessions and streams over).
type disruption struct {
	after int
	sig   syscall.Signal
}

// disrupt runs d in the background; the channel gets the node's index, or
// -1 if there was none to stop.
func (s *clusterStack) disrupt(t *testing.T, log *eventLog, d disruption) chan int {
	done := make(chan int, 1)
	if d.after == 0 {
		done <- -1
		return done
	}
	go func() {
		if !log.waitLen(d.after, 2*time.Minute) {
			done <- -1
			return
		}
		i := s.producer(t)
		if i >= 0 {
			_ = s.nodes[i].Cmd.Process.Signal(d.sig)
		}
		done <- i
	}()
	return done
}

// checkDisrupted checks what a disruption left: another node took the
// answer over; a drained node exited by itself, in time, having handed
// its sessions over.
func (s *clusterStack) checkDisrupted(t *testing.T, d disruption, stopped chan int) {
	t.Helper()
	if d.after == 0 {
		return
	}
	k := <-stopped
	require.GreaterOrEqual(t, k, 0, "a node was stopped")
	t.Logf("%v sent to node n%d after %d progress values", d.sig, k+1, d.after)
	if d.sig == syscall.SIGTERM {
		err, exited := s.nodes[k].Wait(30 * time.Second)
		require.True(t, exited, "the drained node exits")
		assert.NoError(t, err, "the drain completed in time")
		assert.Contains(t, s.nodes[k].Stderr(), "cluster: sessions handed over")
	}
	assert.Positive(t, s.sum(t, `mcpgate_cluster_takeovers_total{what="stream"}`), "another node took the answer over")
}

// clusterFlags: rings that hold a whole answer (so nothing is dropped) and
// a short retry hint, as the single-node cut tests use.
var clusterFlags = []string{"-ring-size", "16384", "-ring-bytes", "16MiB", "-retry-hint", "5ms"}

// streamRate is the stream tool's rate: 1,000 events/s as in the single-node
// cut tests, and 600/s when a node is stopped, so that the 100 cuts still
// fall within the call while its sessions and streams are taken over.
func streamRate(disruptAfter int) int {
	if disruptAfter > 0 {
		return 600
	}
	return 1000
}

// clusterCutsGoSDK runs the Go SDK cut test through the cluster, with a
// disruption of the producing node if d.after > 0.
func clusterCutsGoSDK(t *testing.T, d disruption) {
	start := time.Now()
	up := testenv.StartListening(t, "mock-upstream", testenv.Env(t, "MCPGATE_LOADTEST_BIN"), "upstream", "-listen", "127.0.0.1:0", "-era", "session", "-replay", "16384")
	s := startCluster(t, 3, up.URL, clusterFlags...)
	relay := testenv.StartRelay(t, s.lb.Addr)
	progress, changed := newEventLog(), newEventLog()
	cs := connectDefault(t, "http://"+relay.Addr()+"/mcp", &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			progress.add(int(r.Params.Progress))
		},
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed.add(1) },
	})
	defer cs.Close()
	n := &notifier{gwURL: s.lb.URL, sid: cs.ID(), version: cs.InitializeResult().ProtocolVersion,
		method: "tools/call", params: map[string]any{"name": "notify"}, got: changed, relay: relay}
	stopped := s.disrupt(t, progress, d)
	params := &mcp.CallToolParams{Name: "stream", Arguments: map[string]any{"count": streamCount, "rate": streamRate(d.after)}}
	params.SetProgressToken("cluster")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cuts := startCutter(relay, mockCuts(testenv.ConnStreams, n), 77, progress.firstAdded())
	res, err := cs.CallTool(ctx, params)
	cut, cutErr := cuts.finish()
	t.Logf("cuts=%d by kind=%v relay accepted=%d", cut, cuts.byKind, relay.Accepted())
	if err != nil {
		s.logMetrics(t)
	}
	require.NoError(t, err, "the call (after %d cuts)", cut)
	require.NoError(t, cutErr)
	require.False(t, res.IsError, "%v", res.Content)
	sc, _ := res.StructuredContent.(map[string]any)
	assert.Equal(t, float64(streamCount), sc["emitted"])
	assert.Equal(t, 100, cut, "the relay cut 100 times during the call")
	s.checkDisrupted(t, d, stopped)
	require.NoError(t, n.notify("after the call"))
	assertExactlyOnceInOrder(t, progress, streamCount)
	assert.GreaterOrEqual(t, s.sum(t, "mcpgate_resume_hits_total"), 50.0, "the client resumed its answer by Last-Event-ID")
	assert.Positive(t, s.sum(t, `mcpgate_cluster_mirrors_total{what="opened"}`), "streams were read on nodes that did not produce them")
	assert.Zero(t, s.lost(t), "nothing dropped with rings large enough")
	t.Logf("resumes=%v mirrors=%v notifications=%d took %v", s.sum(t, "mcpgate_resume_hits_total"),
		s.sum(t, `mcpgate_cluster_mirrors_total{what="opened"}`), changed.len(), time.Since(start).Round(time.Millisecond))
}

// TestClusterCutsGoSDK: the Go SDK client (default configuration) through
// the balancer calls the mock's stream tool (10,000 progress notifications)
// while its streams are cut 100 times: every value exactly once, in order,
// the result once, and standalone notifications keep arriving.
func TestClusterCutsGoSDK(t *testing.T) { clusterCutsGoSDK(t, disruption{}) }

// TestClusterKillGoSDK: the same, and the node producing the answer is
// SIGKILLed mid-stream: the events it stored in JetStream are served by the
// others, and the session's owner takes the answer over (resuming it
// upstream by its last event id).
func TestClusterKillGoSDK(t *testing.T) {
	clusterCutsGoSDK(t, disruption{after: 3000, sig: syscall.SIGKILL})
}

// TestClusterDrainGoSDK: the same, and the node producing the answer gets
// SIGTERM mid-stream: it hands its sessions over (the standalone stream to
// a live node at once, the unfinished answer once its pump stopped) before
// its streams close, and exits by itself within its shutdown timeout.
func TestClusterDrainGoSDK(t *testing.T) {
	clusterCutsGoSDK(t, disruption{after: 3000, sig: syscall.SIGTERM})
}

func clusterCutsTypeScriptSDK(t *testing.T, d disruption) {
	start := time.Now()
	up := testenv.StartListening(t, "mock-upstream", testenv.Env(t, "MCPGATE_LOADTEST_BIN"), "upstream", "-listen", "127.0.0.1:0", "-era", "session", "-replay", "16384")
	s := startCluster(t, 3, up.URL, clusterFlags...)
	relay := testenv.StartRelay(t, s.lb.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	t.Setenv("MCPGATE_TS_STREAM_RATE", strconv.Itoa(streamRate(d.after)))
	c := startTSClient(t, ctx, "http://"+relay.Addr()+"/mcp", streamCount)
	closed := false
	defer func() {
		if !closed {
			_ = c.close()
		}
	}()
	n := &notifier{gwURL: s.lb.URL, sid: c.sid, version: c.version,
		method: "tools/call", params: map[string]any{"name": "notify"}, got: c.changed, relay: relay}
	stopped := s.disrupt(t, c.progress, d)
	cuts := startCutter(relay, mockCuts(testenv.ConnStreams, n), 78, c.progress.firstAdded())
	var result string
	select {
	case result = <-c.results:
	case <-c.scanned:
	case <-ctx.Done():
	}
	cut, cutErr := cuts.finish()
	t.Logf("cuts=%d by kind=%v relay accepted=%d", cut, cuts.byKind, relay.Accepted())
	require.True(t, strings.HasPrefix(result, "result "), "the call (after %d cuts): %q; node stderr:\n%s", cut, result, c.stderr.String())
	require.NoError(t, cutErr, "node stderr:\n%s", c.stderr.String())
	assert.Contains(t, result, `"emitted":`+strconv.Itoa(streamCount))
	assert.Equal(t, 100, cut, "the relay cut 100 times during the call")
	s.checkDisrupted(t, d, stopped)
	require.NoError(t, n.notify("after the call"), "node stderr:\n%s", c.stderr.String())
	assertExactlyOnceInOrder(t, c.progress, streamCount)
	closed = true
	require.NoError(t, c.close(), "node client: %s", c.stderr.String())
	assert.Empty(t, c.results, "the result exactly once")
	assert.GreaterOrEqual(t, s.sum(t, "mcpgate_resume_hits_total"), 50.0, "the client resumed its answer by Last-Event-ID")
	assert.Zero(t, s.lost(t), "nothing dropped with rings large enough")
	t.Logf("resumes=%v mirrors=%v took %v", s.sum(t, "mcpgate_resume_hits_total"),
		s.sum(t, `mcpgate_cluster_mirrors_total{what="opened"}`), time.Since(start).Round(time.Millisecond))
}

// TestClusterCutsTypeScriptSDK: the same with the official TypeScript SDK
// client.
func TestClusterCutsTypeScriptSDK(t *testing.T) { clusterCutsTypeScriptSDK(t, disruption{}) }

// TestClusterKillTypeScriptSDK: the same, with the producing node SIGKILLed
// mid-stream.
func TestClusterKillTypeScriptSDK(t *testing.T) {
	clusterCutsTypeScriptSDK(t, disruption{after: 3000, sig: syscall.SIGKILL})
}

// lbPost POSTs body through the balancer, with a bound on the whole
// exchange (a hang fails the test), and returns the status, the session
// header and the body.
func lbPost(t *testing.T, hc *http.Client, url, sid, body string) (int, string, string) {
	t.Helper()
	code, sidOut, out, err := doPost(hc, url, sid, body)
	require.NoError(t, err)
	return code, sidOut, out
}

// doPost is lbPost for any goroutine.
func doPost(hc *http.Client, url, sid, body string) (int, string, string, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
		req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), string(b), err
}

// TestClusterStdioForwarding: a stdio upstream (the reference server as a
// process per session) through the cluster: the process lives on the node
// that took the initialize (the owner); requests landing elsewhere are
// forwarded there over NATS request/reply, streamed answers included (the
// Go SDK client, default configuration: progress, a sampling request and
// its answer). Then the owner is SIGKILLed: requests get an error (502)
// until its lease runs out, then another node claims the session and
// re-initializes its upstream process from the cached initialize; no
// request hangs.
func TestClusterStdioForwarding(t *testing.T) {
	s := startCluster(t, 3, "stdio:"+testenv.Env(t, "MCPGATE_EVERYTHING_SERVER"))
	var progress atomic.Int32
	cs := connectDefault(t, s.lb.URL, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) { progress.Add(1) },
		CreateMessageHandler: func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{Model: "m", Role: "assistant", Content: &mcp.TextContent{Text: "from the client"}}, nil
		},
	})
	defer cs.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range 6 {
		params := &mcp.CallToolParams{Name: "test_tool_with_progress"}
		params.SetProgressToken(fmt.Sprintf("tok-%d", i))
		res, err := cs.CallTool(ctx, params)
		require.NoError(t, err, "call %d", i)
		require.False(t, res.IsError)
		assert.Equal(t, fmt.Sprintf("tok-%d", i), textOf(t, res))
	}
	assert.Eventually(t, func() bool { return progress.Load() == 18 }, 10*time.Second, 10*time.Millisecond, "progress of every call: %d", progress.Load())
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_sampling", Arguments: map[string]any{"prompt": "hi"}})
	require.NoError(t, err)
	assert.Contains(t, textOf(t, res), "from the client", "a server-to-client request and its answer cross nodes")
	assert.Positive(t, s.sum(t, `mcpgate_cluster_forwards_total{result="ok"}`), "requests reached non-owner nodes and were forwarded")
	assert.Positive(t, s.sum(t, `mcpgate_cluster_forwards_total{result="served"}`))

	// A session of raw requests, for the owner's death.
	hc := &http.Client{Timeout: 15 * time.Second}
	code, sid, body := lbPost(t, hc, s.lb.URL, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	require.Equal(t, http.StatusOK, code, body)
	code, _, _ = lbPost(t, hc, s.lb.URL, sid, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	require.Equal(t, http.StatusAccepted, code)
	rec, owner, _, err := s.reg.Session(ctx, sid)
	require.NoError(t, err)
	require.NotNil(t, rec)
	assert.Equal(t, "stdio", rec.Upstream.Kind)
	idx, err := strconv.Atoi(strings.TrimPrefix(owner, "n"))
	require.NoError(t, err, owner)
	require.NoError(t, s.nodes[idx-1].Cmd.Process.Kill())
	t.Logf("SIGKILLed the owner %s", owner)

	start := time.Now()
	var statuses []int
	for {
		callStart := time.Now()
		code, _, body = lbPost(t, hc, s.lb.URL, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
		require.Less(t, time.Since(callStart), 12*time.Second, "a request never hangs")
		statuses = append(statuses, code)
		if code == http.StatusOK {
			break
		}
		require.Contains(t, []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}, code, body)
		require.Less(t, time.Since(start), 30*time.Second, "the session is re-initialized once the lease ran out: %v", statuses)
		time.Sleep(100 * time.Millisecond) // paced retries, as a client's would be
	}
	assert.Contains(t, body, "test_tool_with_progress", "the re-initialized upstream process answers")
	_, owner2, _, err := s.reg.Session(ctx, sid)
	require.NoError(t, err)
	assert.NotEqual(t, owner, owner2, "a live node owns the session now")
	assert.Positive(t, s.sum(t, `mcpgate_cluster_takeovers_total{what="session"}`))
	t.Logf("statuses until re-initialized: %v (took %v)", statuses, time.Since(start).Round(time.Millisecond))
}

// TestClusterRegistryChurn: 10,000 sessions created and deleted through
// the balancer (so across the three nodes); afterwards no node holds a
// session and the registry bucket holds no key.
func TestClusterRegistryChurn(t *testing.T) {
	const sessions, workers = 10_000, 24
	up := testenv.StartListening(t, "mock-upstream", testenv.Env(t, "MCPGATE_LOADTEST_BIN"), "upstream", "-listen", "127.0.0.1:0", "-era", "session")
	s := startCluster(t, 3, up.URL)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer hc.CloseIdleConnections()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan string, workers)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= sessions {
				code, sid, body, err := doPost(hc, s.lb.URL, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"churn","version":"1"}}}`)
				if err != nil || code != http.StatusOK || sid == "" {
					errs <- fmt.Sprintf("initialize: %d %s %v", code, body, err)
					return
				}
				if code, _, body, err = doPost(hc, s.lb.URL, sid, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`); err != nil || code != http.StatusOK {
					errs <- fmt.Sprintf("tools/list: %d %s %v", code, body, err)
					return
				}
				req, _ := http.NewRequest(http.MethodDelete, s.lb.URL, nil)
				req.Header.Set("Mcp-Session-Id", sid)
				resp, err := hc.Do(req)
				if err != nil {
					errs <- "delete: " + err.Error()
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					errs <- fmt.Sprintf("delete: %d", resp.StatusCode)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	t.Logf("%d sessions created, used and deleted in %v", sessions, time.Since(start).Round(time.Millisecond))
	assert.Equal(t, float64(sessions), s.sum(t, "mcpgate_sessions_created_total"))
	assert.Equal(t, float64(sessions), s.sum(t, `mcpgate_sessions_closed_total{reason="client_delete"}`), "one DELETE each")
	for i, gw := range s.nodes {
		assert.Positive(t, scrape(t, gw)["mcpgate_sessions_created_total"], "node n%d created sessions", i+1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.Eventually(t, func() bool {
		return s.sum(t, "mcpgate_sessions") == 0
	}, 30*time.Second, 50*time.Millisecond, "no node keeps a session (copies of sessions deleted elsewhere leave too)")
	keys, err := s.reg.Keys(ctx)
	require.NoError(t, err)
	assert.Empty(t, keys, "no session left in the registry bucket")
	t.Logf("registry reads=%v writes=%v", s.sum(t, `mcpgate_cluster_registry_ops_total{op="read"}`), s.sum(t, `mcpgate_cluster_registry_ops_total{op="write"}`))
}

// seqsUntil reads s's events until one whose notification carries
// params._meta.seq >= last, and returns the seqs read, in order, and the
// last event id seen.
func seqsUntil(t *testing.T, s *testenv.SSEConn, last int) (seqs []int, lastID string) {
	t.Helper()
	_ = s.Conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for len(seqs) == 0 || seqs[len(seqs)-1] < last {
		l, err := s.R.ReadString('\n')
		require.NoError(t, err, "waiting for seq %d, read %v", last, seqs)
		switch {
		case strings.HasPrefix(l, "id: "):
			lastID = strings.TrimSpace(strings.TrimPrefix(l, "id: "))
		case strings.HasPrefix(l, "data: "):
			if m := seqField.FindStringSubmatch(l); m != nil {
				n, _ := strconv.Atoi(m[1])
				seqs = append(seqs, n)
			}
		}
	}
	return seqs, lastID
}

var seqField = regexp.MustCompile(`"seq":(\d+)`)

// TestClusterStandaloneResumesUpstream: a node that takes a session over
// opens the upstream's standalone stream after the last event the cluster
// stored (Last-Event-ID), so what the upstream sent to the node that died
// and that node never stored (here: written into its socket while it was
// stopped, then SIGKILLed) is replayed, not lost: the client's standalone
// stream, resumed on another node, has every pushed event once, in order.
func TestClusterStandaloneResumesUpstream(t *testing.T) {
	up := testenv.StartListening(t, "mock-upstream", testenv.Env(t, "MCPGATE_LOADTEST_BIN"), "upstream", "-listen", "127.0.0.1:0",
		"-era", "session", "-replay", "4096", "-push-rate", "100")
	s := startCluster(t, 3, up.URL, clusterFlags...)
	owner := s.nodes[0]
	sid := initSession(t, owner.URL)
	a := testenv.DialStream(t, owner.URL, sid, "")
	before, lastID := seqsUntil(t, a, 20)
	require.NotEmpty(t, lastID)

	// Stopped, the owner reads nothing more: the upstream's writes land in
	// its socket (the upstream counts them as delivered), and none is stored.
	require.NoError(t, owner.Signal(syscall.SIGSTOP))
	time.Sleep(time.Second)
	require.NoError(t, owner.Signal(syscall.SIGKILL))
	_ = a.Conn.Close()
	time.Sleep(3 * time.Second) // past the owner's lease (clusterLease)

	b := testenv.DialStream(t, s.nodes[1].URL, sid, lastID)
	after, _ := seqsUntil(t, b, before[len(before)-1]+200)
	all := append(before, after...)
	for i := 1; i < len(all); i++ {
		require.Equal(t, all[i-1]+1, all[i], "event %d after %d: every pushed event once, in order (before the kill %v, after %v)", all[i], all[i-1], before, after)
	}
	assert.Contains(t, s.nodes[1].Stderr(), "cluster: took a session over")
}
