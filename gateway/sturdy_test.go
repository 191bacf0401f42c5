//go:build integration

package gateway_test

// Sessions survive cut connections. Each test runs an official client in its
// default configuration (the Go SDK's StreamableClientTransport and the
// TypeScript SDK's StreamableHTTPClientTransport: standalone GET stream on,
// default retries) through a relay that cuts its connections while a long
// tool call streams progress. Every progress value must arrive exactly once,
// in order, the result exactly once, and notifications the server sends on
// the standalone stream must keep reaching the client: one after every few
// cuts, and one after the last.
//
// A notification every few cuts is not only a check: the Go SDK gives up a
// stream after 5 reconnections in a row that brought no new event id
// (StreamableClientTransport.MaxRetries, counted per stream), and a quiet
// standalone stream gets no event id, so more than 5 cuts of it in a row
// would end the session whatever the gateway does.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// eventLog records values a client received (progress values, notification
// arrivals) and lets a test wait for them without sleeping.
type eventLog struct {
	mu      sync.Mutex
	values  []int
	grew    chan struct{} // closed and replaced on every add
	first   chan struct{} // closed on the first add
	started sync.Once
}

func newEventLog() *eventLog {
	return &eventLog{grew: make(chan struct{}), first: make(chan struct{})}
}

func (l *eventLog) add(v int) {
	l.mu.Lock()
	l.values = append(l.values, v)
	close(l.grew)
	l.grew = make(chan struct{})
	l.mu.Unlock()
	l.started.Do(func() { close(l.first) })
}

func (l *eventLog) snapshot() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.values...)
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.values)
}

// firstAdded is closed once the log holds a value.
func (l *eventLog) firstAdded() <-chan struct{} { return l.first }

// waitLen waits until the log holds at least n values, and reports whether
// it did within d.
func (l *eventLog) waitLen(n int, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		l.mu.Lock()
		got, grew := len(l.values), l.grew
		l.mu.Unlock()
		if got >= n {
			return true
		}
		select {
		case <-grew:
		case <-timer.C:
			return false
		}
	}
}

// assertExactlyOnceInOrder checks 1..n, each once, in order. Notification
// handlers may still be running when the call returns, so it first waits
// for the n-th value.
func assertExactlyOnceInOrder(t *testing.T, log *eventLog, n int) {
	t.Helper()
	log.waitLen(n, 10*time.Second)
	got := log.snapshot()
	for i, v := range got {
		if v != i+1 {
			t.Fatalf("notification %d is progress %d: lost, duplicated or out of order", i+1, v)
		}
	}
	require.Equal(t, n, len(got), "every notification exactly once")
}

// cutSpec says how a cutter cuts.
type cutSpec struct {
	n     int              // cuts to make
	wait  testenv.ConnKind // before each cut, wait until each of these kinds has a live connection
	cut   testenv.ConnKind // cut the live connections of these kinds; 0: every connection (CutAll)
	pause [2]time.Duration // then pause a random time in [pause[0], pause[1]) before cutting
	// every > 0: after every every-th cut, call between with the number of
	// cuts so far; an error stops the cutter.
	every   int
	between func(cuts int) error
}

// liveWait bounds how long a cutter waits for the connections it cuts: a
// client reconnects within about 2 s (the Go SDK's longest first delay),
// so a kind still missing after this is a stream the client gave up.
const liveWait = 10 * time.Second

// cutter cuts a relay's connections as its spec says, from its own
// goroutine, until it made spec.n cuts, failed, or is finished.
type cutter struct {
	stop   chan struct{}
	done   chan struct{}
	cuts   int
	byKind map[testenv.ConnKind]int
	err    error
}

// startCutter starts cutting once start is closed (for example once the
// call's first progress notification arrived: its answer stream is then
// established, and every later connection is a resume, which clients retry,
// not a plain POST, which they do not).
func startCutter(relay *testenv.Relay, spec cutSpec, seed uint64, start <-chan struct{}) *cutter {
	c := &cutter{stop: make(chan struct{}), done: make(chan struct{}), byKind: map[testenv.ConnKind]int{}}
	rng := rand.New(rand.NewPCG(seed, 7))
	go func() {
		defer close(c.done)
		select {
		case <-start:
		case <-c.stop:
			return
		}
		for c.cuts < spec.n {
			if spec.wait != 0 && !relay.WaitLive(c.stop, liveWait, spec.wait) {
				select {
				case <-c.stop:
				default:
					c.err = fmt.Errorf("after %d cuts: no live %v connection within %v (live now: %v)", c.cuts, spec.wait, liveWait, relay.Live())
				}
				return
			}
			d := spec.pause[0]
			if spread := spec.pause[1] - spec.pause[0]; spread > 0 {
				d += time.Duration(rng.Int64N(int64(spread)))
			}
			select {
			case <-c.stop:
				return
			case <-time.After(d):
			}
			n := 0
			if spec.cut == 0 {
				n = relay.CutAll()
				c.byKind[0] += n
			} else {
				for k, m := range relay.Cut(spec.cut) {
					c.byKind[k] += m
					n += m
				}
			}
			if n == 0 {
				continue
			}
			c.cuts++
			if spec.every > 0 && c.cuts%spec.every == 0 {
				if err := spec.between(c.cuts); err != nil {
					c.err = err
					return
				}
			}
		}
	}()
	return c
}

// finish stops the cutter and returns how many cuts it made and why it
// stopped early, if it did.
func (c *cutter) finish() (int, error) {
	close(c.stop)
	<-c.done
	return c.cuts, c.err
}

// notifier makes the upstream send one notification on a session's
// standalone stream and waits until the client got it. The trigger reaches
// the gateway directly, not through the relay, so cuts never hit it.
type notifier struct {
	gwURL, sid, version string
	method              string         // JSON-RPC method of the trigger
	params              map[string]any // and its params
	got                 *eventLog      // the client's arrivals of the notification
	// relay, if set: trigger only once the client's standalone stream is
	// connected again (see TestCutsNotifyWhileAway for the other case).
	relay *testenv.Relay
	sent  int
}

// notifyWait bounds the wait for a notification: a reconnection plus the
// gateway's delivery.
const notifyWait = 15 * time.Second

func (n *notifier) notify(after string) error {
	if n.relay != nil && !n.relay.WaitLive(nil, liveWait, testenv.ConnStandalone) {
		return fmt.Errorf("%s: the client's standalone stream is not connected again within %v (live: %v)", after, liveWait, n.relay.Live())
	}
	n.sent++
	if err := triggerOnly(n); err != nil {
		return fmt.Errorf("%s: %w", after, err)
	}
	if !n.got.waitLen(n.sent, notifyWait) {
		return fmt.Errorf("the notification sent %s never reached the client's standalone stream within %v (%d of %d arrived)",
			after, notifyWait, n.got.len(), n.sent)
	}
	return nil
}

// triggerOnly sends n's trigger number n.sent and checks its answer. A
// balancer's own 502 (its HTML page: the node serving the request died
// under it, as the cluster tests make nodes do) is retried, as a client
// would: the trigger may then have run twice, and the notifications are
// counted as at least n.sent. Any answer of the gateway's own is checked.
func triggerOnly(n *notifier) error {
	body, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": fmt.Sprintf("trigger-%d", n.sent), "method": n.method, "params": n.params})
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		status, b, err := postTrigger(n, body)
		if err != nil {
			return fmt.Errorf("trigger %d: %w", n.sent, err)
		}
		if status == http.StatusBadGateway && strings.HasPrefix(b, "<html>") && attempt < 3 {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if status != http.StatusOK || !strings.Contains(b, `"result"`) || strings.Contains(b, `"isError":true`) {
			return fmt.Errorf("trigger %d: %d %s", n.sent, status, b)
		}
		return nil
	}
}

// postTrigger POSTs one trigger request on n's session.
func postTrigger(n *notifier, body []byte) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, n.gwURL, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", n.sid)
	req.Header.Set("MCP-Protocol-Version", n.version)
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// between is a cutSpec.between that sends a notification.
func (n *notifier) between(cuts int) error { return n.notify(fmt.Sprintf("after cut %d", cuts)) }

// cutKinds are the three ways the mock tests cut: only the POST answer
// stream (and its resumes), only the standalone stream, both at once.
var cutKinds = []struct {
	name string
	kind testenv.ConnKind
}{
	{"answer", testenv.ConnAnswer},
	{"standalone", testenv.ConnStandalone},
	{"both", testenv.ConnStreams},
}

// mockCuts is the cutting of the mock tests: 100 cuts of kind, each 5-45
// ms after the kind is live again, a notification after every 4th.
func mockCuts(kind testenv.ConnKind, n *notifier) cutSpec {
	return cutSpec{n: 100, wait: kind, cut: kind, pause: [2]time.Duration{5 * time.Millisecond, 45 * time.Millisecond}, every: 4, between: n.between}
}

// gatewayFlags give the mock tests' gateway rings that hold a whole answer
// and a short retry hint, so reconnections are quick.
var gatewayFlags = []string{"-ring-size", "16384", "-ring-bytes", "16MiB", "-retry-hint", "5ms"}

// connectDefault connects the Go SDK client in its default configuration.
func connectDefault(t *testing.T, url string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "mcpgate-sturdy", Version: "1.0.0"}, opts)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url}, nil)
	require.NoError(t, err)
	return cs
}

// TestCutsGoSDK: the Go SDK client calls the mock's stream tool (10,000
// progress notifications at 1,000/s, then the result) while the relay cuts
// its POST answer stream, its standalone stream, or both at once, 100
// times; a notifications/tools/list_changed sent after every 4th cut and
// after the call must reach it.
func TestCutsGoSDK(t *testing.T) {
	for i, kc := range cutKinds {
		t.Run("cut="+kc.name, func(t *testing.T) {
			start := time.Now()
			_, gw := mockStack(t, gatewayFlags...)
			relay := testenv.StartRelay(t, hostPort(t, gw.URL))
			progress, changed := newEventLog(), newEventLog()
			cs := connectDefault(t, "http://"+relay.Addr()+"/mcp", &mcp.ClientOptions{
				ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
					progress.add(int(r.Params.Progress))
				},
				ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed.add(1) },
			})
			defer cs.Close()
			n := &notifier{gwURL: gw.URL, sid: cs.ID(), version: cs.InitializeResult().ProtocolVersion,
				method: "tools/call", params: map[string]any{"name": "notify"}, got: changed, relay: relay}

			params := &mcp.CallToolParams{Name: "stream", Arguments: map[string]any{"count": streamCount, "rate": 1000}}
			params.SetProgressToken("sturdy")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cuts := startCutter(relay, mockCuts(kc.kind, n), uint64(10+i), progress.firstAdded())
			res, err := cs.CallTool(ctx, params)
			cut, cutErr := cuts.finish()
			t.Logf("cuts=%d by kind=%v relay accepted=%d", cut, cuts.byKind, relay.Accepted())
			require.NoError(t, err, "the call (after %d cuts)", cut)
			require.NoError(t, cutErr)
			require.False(t, res.IsError, "%v", res.Content)
			sc, _ := res.StructuredContent.(map[string]any)
			assert.Equal(t, float64(streamCount), sc["emitted"])
			assert.Equal(t, 100, cut, "the relay cut 100 times during the call")
			// The client handles notifications one at a time, in arrival
			// order: once this one was handled, every progress one was.
			require.NoError(t, n.notify("after the call"))
			assertExactlyOnceInOrder(t, progress, streamCount)

			m := scrape(t, gw)
			if kc.kind&testenv.ConnAnswer != 0 {
				assert.GreaterOrEqual(t, m["mcpgate_resume_hits_total"], 50.0, "the client resumed its answer by Last-Event-ID")
			}
			assert.Zero(t, lostByCounters(m), "nothing dropped with a ring large enough")
			t.Logf("resumes=%v notifications=%d took %v", m["mcpgate_resume_hits_total"], changed.len(), time.Since(start).Round(time.Millisecond))
		})
	}
}

// tsClient is the TypeScript SDK client script run by Node.
type tsClient struct {
	cmd          *exec.Cmd
	stdin        io.WriteCloser
	stderr       *testenv.Buffer
	sid, version string
	progress     *eventLog
	changed      *eventLog
	results      chan string // the result line, or "failed ..."
	scanned      chan struct{}
}

// startTSClient runs testdata/ts_sturdy_client.mjs against url and returns
// once it reported its session.
func startTSClient(t *testing.T, ctx context.Context, url string, count int) *tsClient {
	t.Helper()
	node := testenv.Env(t, "MCPGATE_NODE")
	sdkDir := testenv.Env(t, "MCPGATE_TS_SDK_DIR")
	// ESM resolves packages from the script's folder: run a copy inside the
	// SDK's install folder, under a name of its own.
	src, err := os.ReadFile("testdata/ts_sturdy_client.mjs")
	require.NoError(t, err)
	f, err := os.CreateTemp(sdkDir, "ts_sturdy_client-*.mjs")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.Remove(f.Name()) })
	_, err = f.Write(src)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	c := &tsClient{stderr: &testenv.Buffer{}, progress: newEventLog(), changed: newEventLog(),
		results: make(chan string, 2), scanned: make(chan struct{})}
	c.cmd = exec.CommandContext(ctx, node, f.Name(), url, strconv.Itoa(count))
	c.cmd.Dir = sdkDir
	c.cmd.Stderr = c.stderr
	c.stdin, err = c.cmd.StdinPipe()
	require.NoError(t, err)
	out, err := c.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, c.cmd.Start())
	session := make(chan []string, 1)
	go func() {
		defer close(c.scanned)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			verb, rest, _ := strings.Cut(sc.Text(), " ")
			switch verb {
			case "session":
				session <- strings.Fields(rest)
			case "progress":
				v, err := strconv.Atoi(rest)
				if err != nil {
					v = -1 // shows up as a wrong value
				}
				c.progress.add(v)
			case "list_changed":
				c.changed.add(1)
			case "result", "failed":
				select {
				case c.results <- sc.Text():
				default: // a second one: the extra shows in the results' count
				}
			}
		}
	}()
	select {
	case f := <-session:
		require.Len(t, f, 2)
		c.sid, c.version = f[0], f[1]
	case <-c.scanned:
		t.Fatalf("node client ended before connecting: %s", c.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("node client did not connect: %s", c.stderr.String())
	}
	return c
}

// close ends the client (it closes its session when stdin ends) and waits
// for it.
func (c *tsClient) close() error {
	_ = c.stdin.Close()
	<-c.scanned
	return c.cmd.Wait()
}

// TestCutsTypeScriptSDK: the same with the official TypeScript SDK client,
// run by Node, which reports each notification on stdout.
func TestCutsTypeScriptSDK(t *testing.T) {
	for i, kc := range cutKinds {
		t.Run("cut="+kc.name, func(t *testing.T) {
			start := time.Now()
			_, gw := mockStack(t, gatewayFlags...)
			relay := testenv.StartRelay(t, hostPort(t, gw.URL))
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			c := startTSClient(t, ctx, "http://"+relay.Addr()+"/mcp", streamCount)
			closed := false
			defer func() {
				if !closed {
					_ = c.close()
				}
			}()
			n := &notifier{gwURL: gw.URL, sid: c.sid, version: c.version,
				method: "tools/call", params: map[string]any{"name": "notify"}, got: c.changed, relay: relay}

			cuts := startCutter(relay, mockCuts(kc.kind, n), uint64(20+i), c.progress.firstAdded())
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
			require.NoError(t, n.notify("after the call"), "node stderr:\n%s", c.stderr.String())
			assertExactlyOnceInOrder(t, c.progress, streamCount)

			closed = true
			require.NoError(t, c.close(), "node client: %s", c.stderr.String())
			assert.Empty(t, c.results, "the result exactly once")
			m := scrape(t, gw)
			if kc.kind&testenv.ConnAnswer != 0 {
				assert.GreaterOrEqual(t, m["mcpgate_resume_hits_total"], 50.0, "the client resumed its answer by Last-Event-ID")
			}
			assert.Zero(t, lostByCounters(m), "nothing dropped with a ring large enough")
			t.Logf("resumes=%v notifications=%d took %v", m["mcpgate_resume_hits_total"], c.changed.len(), time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestCutsGoSDKServerEverything: the Go SDK client, through the gateway,
// calls npm server-everything's trigger-long-running-operation (200 progress
// steps over 10 s) while every connection of the client is cut at 10 random
// moments. server-everything sends nothing on the standalone stream on its
// own for a session but notifications it is asked for: resources/subscribe
// answers with a notifications/message there (an acknowledgement log), and
// toggle-subscriber-updates starts notifications/resources/updated there
// for the subscribed URIs (at once, then every 5 s). Its tools/list_changed
// goes out once, right after initialization, and cannot be triggered.
func TestCutsGoSDKServerEverything(t *testing.T) {
	start := time.Now()
	up := testenv.StartServerEverything(t, testenv.Env(t, "MCPGATE_NODE"), testenv.Env(t, "MCPGATE_SERVER_EVERYTHING_JS"))
	gw := testenv.StartGateway(t, testenv.Env(t, "MCPGATE_GATEWAY_BIN"), up.URL, "-retry-hint", "5ms")
	relay := testenv.StartRelay(t, hostPort(t, gw.URL))

	const steps = 200
	var (
		mu       sync.Mutex
		progress []float64
	)
	logs, updates := newEventLog(), newEventLog()
	firstProgress := newEventLog()
	cs := connectDefault(t, "http://"+relay.Addr()+"/mcp", &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			if r.Params.ProgressToken != "long-op" {
				return
			}
			mu.Lock()
			progress = append(progress, r.Params.Progress)
			mu.Unlock()
			firstProgress.add(1)
		},
		LoggingMessageHandler: func(_ context.Context, r *mcp.LoggingMessageRequest) {
			if s, _ := r.Params.Data.(string); strings.Contains(s, "Subscribe Resource request") {
				logs.add(1)
			}
		},
		ResourceUpdatedHandler: func(context.Context, *mcp.ResourceUpdatedNotificationRequest) { updates.add(1) },
	})
	defer cs.Close()
	const watched = "demo://sturdy/watched"
	n := &notifier{gwURL: gw.URL, sid: cs.ID(), version: cs.InitializeResult().ProtocolVersion,
		method: "resources/subscribe", params: map[string]any{"uri": watched}, got: logs, relay: relay}

	params := &mcp.CallToolParams{Name: "trigger-long-running-operation", Arguments: map[string]any{"duration": 10, "steps": steps}}
	params.SetProgressToken("long-op")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec := cutSpec{n: 10, wait: testenv.ConnAnswer, pause: [2]time.Duration{100 * time.Millisecond, 800 * time.Millisecond}, every: 4, between: n.between}
	cuts := startCutter(relay, spec, 30, firstProgress.firstAdded())
	res, err := cs.CallTool(ctx, params)
	cut, cutErr := cuts.finish()
	t.Logf("cuts=%d (every connection each time: %d) relay accepted=%d", cut, cuts.byKind[0], relay.Accepted())
	require.NoError(t, err, "the call (after %d cuts)", cut)
	require.NoError(t, cutErr)
	require.False(t, res.IsError, "%v", res.Content)
	assert.Contains(t, textOf(t, res), fmt.Sprintf("Steps: %d", steps))
	assert.Equal(t, 10, cut, "the relay cut every connection 10 times during the call")

	// After the cuts: an acknowledgement log (once handled, every earlier
	// notification was: the client handles them in arrival order), then
	// resources/updated.
	require.NoError(t, n.notify("after the call"))
	mu.Lock()
	got := append([]float64(nil), progress...)
	mu.Unlock()
	for i, v := range got {
		require.Equal(t, float64(i+1), v, "progress %d: lost, duplicated or out of order", i+1)
	}
	require.Len(t, got, steps, "every progress step exactly once")
	n2 := &notifier{gwURL: gw.URL, sid: cs.ID(), version: n.version, method: "tools/call",
		params: map[string]any{"name": "toggle-subscriber-updates"}, got: updates, relay: relay}
	require.NoError(t, n2.notify("after the call"))
	t.Logf("took %v", time.Since(start).Round(time.Millisecond))
}

// TestCutsGoSDKReferenceServer: the Go SDK client, through the gateway, in
// front of go-sdk's conformance everything-server (stateful). Its only tool
// that sends progress, test_tool_with_progress, is short (progress 0, 50,
// 100 about 50 ms apart, then the result), so the test calls it until 10
// cuts landed, one per call at a random moment 0-90 ms after its first
// progress, each cutting the call's answer stream and the standalone stream
// at once. Every cut lands well before the result (about 150 ms after the
// first progress): one landing as the result arrives could kill the
// connection the client is about to reuse for its next POST, which no
// client retries.
// test_trigger_tool_change makes the server send
// notifications/tools/list_changed to every session's standalone stream.
func TestCutsGoSDKReferenceServer(t *testing.T) {
	start := time.Now()
	s := startStack(t, "-retry-hint", "5ms")
	relay := testenv.StartRelay(t, hostPort(t, s.gw.URL))

	var (
		mu       sync.Mutex
		progress = map[string][]float64{}
		firsts   = map[string]*eventLog{}
	)
	changed := newEventLog()
	cs := connectDefault(t, "http://"+relay.Addr()+"/mcp", &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			tok, _ := r.Params.ProgressToken.(string)
			mu.Lock()
			progress[tok] = append(progress[tok], r.Params.Progress)
			first := firsts[tok]
			mu.Unlock()
			if first != nil {
				first.add(1)
			}
		},
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed.add(1) },
	})
	defer cs.Close()
	n := &notifier{gwURL: s.gw.URL, sid: cs.ID(), version: cs.InitializeResult().ProtocolVersion,
		method: "tools/call", params: map[string]any{"name": "test_trigger_tool_change"}, got: changed, relay: relay}

	rng := rand.New(rand.NewPCG(40, 7))
	cut, calls := 0, 0
	for ; cut < 10 && calls < 100; calls++ {
		tok := fmt.Sprintf("call-%d", calls)
		first := newEventLog()
		mu.Lock()
		firsts[tok] = first
		mu.Unlock()
		cuts := startCutter(relay, cutSpec{n: 1, cut: testenv.ConnStreams,
			pause: [2]time.Duration{0, 90 * time.Millisecond}}, rng.Uint64(), first.firstAdded())
		params := &mcp.CallToolParams{Name: "test_tool_with_progress"}
		params.SetProgressToken(tok)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		res, err := cs.CallTool(ctx, params)
		cancel()
		c, cutErr := cuts.finish()
		require.NoError(t, err, "call %d (after %d cuts)", calls, cut+c)
		require.NoError(t, cutErr)
		require.False(t, res.IsError, "%v", res.Content)
		assert.Equal(t, tok, textOf(t, res), "the call's own result")
		cut += c
		if c > 0 && cut%4 == 0 {
			require.NoError(t, n.between(cut))
		}
	}
	require.Equal(t, 10, cut, "10 cuts within %d calls", calls)
	// Once this notification was handled, every earlier one was.
	require.NoError(t, n.notify("after the calls"))
	for i := range calls {
		tok := fmt.Sprintf("call-%d", i)
		mu.Lock()
		got := append([]float64(nil), progress[tok]...)
		mu.Unlock()
		assert.Equal(t, []float64{0, 50, 100}, got, "%s: every progress value exactly once, in order", tok)
	}
	t.Logf("cuts=%d calls=%d relay accepted=%d took %v", cut, calls, relay.Accepted(), time.Since(start).Round(time.Millisecond))
}

// TestCutsNotifyWhileAway: a notification the upstream sends after the
// client's standalone stream was cut, and before the client connected again
// (the relay holds its new connections until the gateway stored the
// notification), still reaches the client once it is back. The gateway
// learns of the cut only when it writes to the dead connection, and a
// client that got no event id on a connection reconnects without
// Last-Event-ID, so the gateway alone must know what that connection did
// not deliver. Ten rounds, each client in its default configuration.
func TestCutsNotifyWhileAway(t *testing.T) {
	rounds := func(t *testing.T, relay *testenv.Relay, gw *testenv.Proc, n *notifier, alive func() error) {
		t.Helper()
		for i := 1; i <= 10; i++ {
			require.True(t, relay.WaitLive(nil, liveWait, testenv.ConnStandalone), "round %d: the standalone stream is connected", i)
			release := relay.Hold()
			cut := relay.Cut(testenv.ConnStandalone)
			require.Equal(t, 1, cut[testenv.ConnStandalone], "round %d: one standalone stream cut", i)
			pushed := scrape(t, gw)["mcpgate_events_pushed_total"]
			n.sent++
			err := triggerOnly(n)
			if err == nil {
				// Wait until the gateway stored the notification, then let the
				// client back in.
				deadline := time.Now().Add(notifyWait)
				for scrape(t, gw)["mcpgate_events_pushed_total"] <= pushed && time.Now().Before(deadline) {
				}
			}
			release()
			require.NoError(t, err, "round %d", i)
			if !n.got.waitLen(n.sent, notifyWait) {
				t.Fatalf("round %d: the notification sent while the client was away never reached it within %v (%d of %d arrived); session: %v",
					i, notifyWait, n.got.len(), n.sent, alive())
			}
		}
	}

	t.Run("client=go", func(t *testing.T) {
		_, gw := mockStack(t, gatewayFlags...)
		relay := testenv.StartRelay(t, hostPort(t, gw.URL))
		changed := newEventLog()
		cs := connectDefault(t, "http://"+relay.Addr()+"/mcp", &mcp.ClientOptions{
			ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed.add(1) },
		})
		defer cs.Close()
		n := &notifier{gwURL: gw.URL, sid: cs.ID(), version: cs.InitializeResult().ProtocolVersion,
			method: "tools/call", params: map[string]any{"name": "notify"}, got: changed}
		rounds(t, relay, gw, n, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return cs.Ping(ctx, nil)
		})
	})

	t.Run("client=ts", func(t *testing.T) {
		_, gw := mockStack(t, gatewayFlags...)
		relay := testenv.StartRelay(t, hostPort(t, gw.URL))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c := startTSClient(t, ctx, "http://"+relay.Addr()+"/mcp", 1) // one progress, then an idle session
		defer func() { _ = c.close() }()
		select {
		case r := <-c.results:
			require.True(t, strings.HasPrefix(r, "result "), r)
		case <-ctx.Done():
			t.Fatal("no result")
		}
		n := &notifier{gwURL: gw.URL, sid: c.sid, version: c.version,
			method: "tools/call", params: map[string]any{"name": "notify"}, got: c.changed}
		rounds(t, relay, gw, n, func() error { return fmt.Errorf("node stderr:\n%s", c.stderr.String()) })
	})
}
