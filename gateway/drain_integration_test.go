//go:build integration

package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// openStream opens a session's stream over a raw connection, with
// Last-Event-ID when last is set, and returns it after a 200's headers.
func openStream(t *testing.T, url, sid, last string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", hostPort(t, url))
	require.NoError(t, err)
	hdr := ""
	if last != "" {
		hdr = "Last-Event-ID: " + last + "\r\n"
	}
	fmt.Fprintf(c, "GET /mcp HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nMcp-Session-Id: %s\r\nMCP-Protocol-Version: 2025-11-25\r\n%s\r\n",
		hostPort(t, url), sid, hdr)
	br := bufio.NewReader(c)
	status, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, status, " 200 ", "resume %s of %s: %s", last, sid, status)
	for {
		l, err := br.ReadString('\n')
		require.NoError(t, err)
		if l == "\r\n" {
			return c, br
		}
	}
}

// waitEventID reads a raw stream until the event with this id; false if
// the stream ended first.
func waitEventID(br *bufio.Reader, id string) bool {
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return false
		}
		if strings.TrimSpace(l) == "id: "+id {
			return true
		}
	}
}

// parallel runs f(i) for i in [0, n) on workers goroutines.
func parallel(n, workers int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// TestDrainThousandStreams: SIGTERM to a gateway holding 1,000 connected
// standalone streams ends them spread over -drain-window (the distribution
// of the close times is logged), each with the restart's retry hint (the
// window plus -retry-hint); meanwhile /healthz stays 200, /readyz turns 503
// ("draining") and a new session gets 503 with Retry-After. The gateway
// then saves its sessions; a new process on the same address restores them,
// and every client resumes (GET with the Last-Event-ID it last saw: 200,
// and the next notification of its session arrives on that stream). That
// is what "resumes" means on a single node: the same session and stream,
// continued by the next process.
func TestDrainThousandStreams(t *testing.T) {
	const n = 1000
	const window = 4 * time.Second
	const hint = time.Second
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	bin := testenv.Env(t, "MCPGATE_GATEWAY_BIN")
	up := testenv.StartListening(t, "mock-upstream", testenv.Env(t, "MCPGATE_LOADTEST_BIN"), "upstream", "-listen", "127.0.0.1:0", "-era", "session")
	addr := testenv.FreeAddr(t)
	state := filepath.Join(t.TempDir(), "sessions.state")
	flags := restartFlags(addr, state, "-drain-window", window.String(), "-retry-hint", hint.String(),
		"-shutdown-timeout", "60s", "-log-level", "info")
	gw := testenv.StartGateway(t, bin, up.URL, flags...)

	sids := make([]string, n)
	conns := make([]*bufio.Reader, n)
	parallel(n, 16, func(i int) {
		sids[i] = rawSession(t, gw.URL, "2025-11-25")
		c, br := openStream(t, gw.URL, sids[i], "")
		t.Cleanup(func() { c.Close() })
		conns[i] = br
		callTool(t, gw.URL, sids[i], "2025-11-25", "notify")
		if !waitEventID(br, "0_1") {
			t.Errorf("session %d: no first event", i)
		}
	})
	require.False(t, t.Failed())
	m := scrape(t, gw)
	require.Equal(t, float64(n), m[`mcpgate_streams{kind="standalone",state="connected"}`])
	assert.Equal(t, http.StatusOK, adminStatus(t, gw, "/readyz"))

	closedAt := make([]time.Duration, n)
	hints := make([]int, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hints[i] = readUntilEnd(conns[i])
			closedAt[i] = time.Since(start)
		}()
	}
	sigterm(t, gw)

	// Health through the drain.
	deadline := time.Now().Add(window / 2)
	sawDraining := false
	for time.Now().Before(deadline) && !sawDraining {
		code, body := adminGet(t, gw, "/readyz")
		sawDraining = code == http.StatusServiceUnavailable && strings.Contains(body, "draining")
	}
	assert.True(t, sawDraining, "/readyz says draining")
	assert.Equal(t, http.StatusOK, adminStatus(t, gw, "/healthz"), "alive while draining")
	st, body, retryAfter := initializeRaw(t, gw.URL)
	assert.Equal(t, http.StatusServiceUnavailable, st, "a new session while draining: %s", body)
	assert.NotEmpty(t, retryAfter)

	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(window + 30*time.Second):
		t.Fatal("streams still open long after the drain window")
	}
	_, exited := gw.Wait(30 * time.Second)
	require.True(t, exited, "the gateway exits after the drain")

	sorted := slices.Clone(closedAt)
	slices.Sort(sorted)
	q := func(p float64) time.Duration { return sorted[int(p*float64(n-1))] }
	var buckets [12]int // tenths of the window, then later
	for _, d := range closedAt {
		buckets[min(int(d*10/window), 11)]++
	}
	t.Logf("drain of %d streams over %v: close times after SIGTERM min %v p10 %v p25 %v p50 %v p75 %v p90 %v max %v",
		n, window, sorted[0].Round(time.Millisecond), q(.1).Round(time.Millisecond), q(.25).Round(time.Millisecond),
		q(.5).Round(time.Millisecond), q(.75).Round(time.Millisecond), q(.9).Round(time.Millisecond), sorted[n-1].Round(time.Millisecond))
	var hist strings.Builder
	for b, c := range buckets {
		lo := window * time.Duration(b) / 10
		if b == 11 {
			fmt.Fprintf(&hist, "\n  >= %v: %d", window*11/10, c)
			continue
		}
		fmt.Fprintf(&hist, "\n  [%v, %v): %4d %s", lo, lo+window/10, c, strings.Repeat("#", c/5))
	}
	t.Logf("closes per tenth of the window:%s", hist.String())
	for b := 0; b < 10; b++ {
		assert.LessOrEqual(t, buckets[b], n/4, "at most a quarter of the streams in one tenth of the window (%d)", b)
	}
	assert.Less(t, q(.1), window*3/10, "the first tenth closes early in the window")
	assert.Greater(t, q(.9), window*6/10, "the last tenth closes late in the window")
	assert.Less(t, sorted[n-1], window+5*time.Second, "every stream ends within the window (plus slack for a loaded machine)")
	wantHint := int((window + hint).Milliseconds())
	for i, h := range hints {
		if !assert.Equal(t, wantHint, h, "stream %d: the restart's retry hint", i) {
			break
		}
	}

	// A new process on the same address: every client resumes, and gets
	// the next notification at once. One the upstream writes before the
	// new process has reopened that session's standalone stream goes to
	// the old process's connection (the upstream has not seen it closed
	// yet); the new process reopens the stream after the last event the
	// old one read (saved in the state file), so the upstream replays it.
	gw = testenv.StartGateway(t, bin, up.URL, flags...)
	assert.Equal(t, float64(n), scrape(t, gw)["mcpgate_sessions_restored_total"])
	parallel(n, 16, func(i int) {
		c, br := openStream(t, gw.URL, sids[i], "0_1")
		defer c.Close()
		callTool(t, gw.URL, sids[i], "2025-11-25", "notify")
		if !waitEventID(br, "0_2") {
			t.Errorf("session %d: the resumed stream did not get the next event", i)
		}
	})
	assert.Equal(t, int64(n), readMockCounters(t, up.URL).Resumes, "every upstream standalone stream was resumed after its last event")
	created, deleted := mockStats(t, up.URL)
	assert.Equal(t, int64(n), created, "no upstream session was re-initialized")
	assert.Zero(t, deleted, "none was ended")
	m = scrape(t, gw)
	assert.Equal(t, float64(n), m["mcpgate_resume_hits_total"])
}

// adminGet reads a path of the gateway's admin listener.
func adminGet(t *testing.T, gw *testenv.Proc, path string) (int, string) {
	t.Helper()
	resp, err := freshClient.Get(gw.AdminURL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func adminStatus(t *testing.T, gw *testenv.Proc, path string) int {
	t.Helper()
	code, _ := adminGet(t, gw, path)
	return code
}

// initializeRaw tries to open a session; it returns the status, body and
// Retry-After.
func initializeRaw(t *testing.T, url string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := freshClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Retry-After")
}

// TestSecondSignalCutsTheDrain: with a drain window far longer than the
// test, a second signal (SIGINT after SIGTERM) ends every stream at once
// and the gateway exits promptly, saving its sessions.
func TestSecondSignalCutsTheDrain(t *testing.T) {
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	up := testenv.StartListening(t, "mock-upstream", testenv.Env(t, "MCPGATE_LOADTEST_BIN"), "upstream", "-listen", "127.0.0.1:0", "-era", "session")
	state := filepath.Join(t.TempDir(), "sessions.state")
	gw := testenv.StartGateway(t, testenv.Env(t, "MCPGATE_GATEWAY_BIN"), up.URL,
		"-state-file", state, "-drain-window", "10m", "-shutdown-timeout", "20m")
	const n = 20
	ended := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		sid := rawSession(t, gw.URL, "2025-11-25")
		c, br := openStream(t, gw.URL, sid, "")
		t.Cleanup(func() { c.Close() })
		go func() { readUntilEnd(br); ended <- struct{}{} }()
	}
	sigterm(t, gw)
	require.True(t, gw.WaitStderr("shutting down", 10*time.Second))
	start := time.Now()
	require.NoError(t, gw.Signal(syscall.SIGINT))
	for i := 0; i < n; i++ {
		select {
		case <-ended:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d streams still open 30 s after the second signal", n-i, n)
		}
	}
	err, exited := gw.Wait(30 * time.Second)
	require.True(t, exited, "the gateway exits after the cut drain")
	assert.NoError(t, err, "an orderly exit")
	assert.Less(t, time.Since(start), 30*time.Second)
	assert.Contains(t, gw.Stderr(), "second signal: cutting the drain short")
	assert.FileExists(t, state, "the sessions were saved")
}
