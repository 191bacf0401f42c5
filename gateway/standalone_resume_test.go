package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// resumingUpstream is a Streamable HTTP server whose standalone stream
// breaks after its first two events. A GET with Last-Event-ID gets the
// events after that id; one without gets only events sent after it came.
// It records the Last-Event-ID of every GET.
// With refuse, a GET with Last-Event-ID gets 400 instead, and the next GET
// without one gets event 5 and stays open.
type resumingUpstream struct {
	refuse  bool
	mu      sync.Mutex
	lastIDs []string
}

func (u *resumingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		answerPost(w, r, "resuming")
	case http.MethodGet:
		last := r.Header.Get("Last-Event-ID")
		u.mu.Lock()
		u.lastIDs = append(u.lastIDs, last)
		fresh := 0
		for _, id := range u.lastIDs {
			if id == "" {
				fresh++
			}
		}
		u.mu.Unlock()
		if u.refuse && last != "" {
			http.Error(w, "cannot resume", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		event := func(n int) {
			fmt.Fprintf(w, "id: s_%d\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":%d}}\n\n", n, n)
		}
		switch {
		case u.refuse && fresh > 1:
			event(5)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		case last == "":
			// The first connection: two events, then the connection breaks
			// (the handler returns). Events 3 and 4 are "sent" while no
			// connection is open: only a resumption gets them.
			event(1)
			event(2)
			w.(http.Flusher).Flush()
		case last == "s_2":
			event(3)
			event(4)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	case http.MethodDelete:
		w.WriteHeader(http.StatusOK)
	}
}

// answerPost answers a POST of the test upstreams here: initialize opens
// session up-1 as server name, anything else is accepted (202).
func answerPost(w http.ResponseWriter, r *http.Request, name string) {
	body, _ := io.ReadAll(r.Body)
	if !strings.Contains(string(body), `"initialize"`) {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	w.Header().Set("Mcp-Session-Id", "up-1")
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":%q,"version":"1"}}}`, name)
}

// TestStandaloneStreamResumesUpstream: when the upstream's standalone
// stream breaks, the gateway reopens it after the last event it read
// (Last-Event-ID), so what the upstream sent meanwhile reaches the client
// exactly once, in order.
//
// An upstream that cannot resume from that id (400) gets a fresh GET.
func TestStandaloneStreamResumesUpstream(t *testing.T) {
	t.Run("resumed", func(t *testing.T) {
		fake := &resumingUpstream{}
		readStandalone(t, fake, 1, 2, 3, 4)
		fake.mu.Lock()
		defer fake.mu.Unlock()
		require.GreaterOrEqual(t, len(fake.lastIDs), 2)
		assert.Equal(t, []string{"", "s_2"}, fake.lastIDs[:2], "the second GET continues after the last event read")
	})
	t.Run("refused", func(t *testing.T) {
		fake := &resumingUpstream{refuse: true}
		readStandalone(t, fake, 1, 2, 5)
		fake.mu.Lock()
		defer fake.mu.Unlock()
		require.GreaterOrEqual(t, len(fake.lastIDs), 3)
		assert.Equal(t, []string{"", "s_2", ""}, fake.lastIDs[:3], "refused: a fresh GET")
	})
}

// gatewayInFront serves fake as a Streamable HTTP upstream and returns the
// URL of an in-process gateway in front of it.
func gatewayInFront(t *testing.T, fake http.Handler) string {
	t.Helper()
	us := httptest.NewServer(fake)
	t.Cleanup(us.Close)
	tr, err := upstream.NewHTTP(upstream.HTTPConfig{URL: us.URL + "/mcp", Timeout: 5 * time.Second})
	require.NoError(t, err)
	_, url := serveInProcess(t, gateway.Config{Upstream: tr, UpstreamEra: gateway.UpstreamEraSession})
	return url
}

// readStandalone opens a session through a gateway in front of fake and
// its standalone stream, and checks that the stream's messages carry
// exactly the given data values, in order.
func readStandalone(t *testing.T, fake *resumingUpstream, want ...int) {
	t.Helper()
	url := gatewayInFront(t, fake)
	sid := initSession(t, url)
	require.NotEmpty(t, sid)
	stream := testenv.DialStream(t, url, sid, "")
	for _, w := range want {
		got := stream.Until(t, fmt.Sprintf(`"data":%d}`, w))
		assert.Equal(t, 1, strings.Count(got, `"notifications/message"`), "event %d, in order, once: %.300q", w, got)
	}
}

// pushingUpstream is a Streamable HTTP server whose standalone stream stays
// open and sends what is put on events; opened and ended get a value when
// a standalone stream starts and ends.
type pushingUpstream struct {
	events, opened, ended chan string
	greeting              string // written with the GET's headers, if set
}

func (u *pushingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		answerPost(w, r, "pushing")
	case http.MethodGet:
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, u.greeting)
		w.(http.Flusher).Flush()
		u.opened <- "GET"
		defer func() { u.ended <- "GET" }()
		for {
			select {
			case ev := <-u.events:
				fmt.Fprintf(w, "data: %s\n\n", ev)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	case http.MethodDelete:
		w.WriteHeader(http.StatusOK)
	}
}

// pushingStandalone starts the gateway in front of a pushingUpstream that
// greets its standalone stream with greeting, opens a session and its GET
// stream, and returns once the gateway has opened the upstream's.
func pushingStandalone(t *testing.T, greeting string) (*pushingUpstream, string, string, *testenv.SSEConn) {
	t.Helper()
	fake := &pushingUpstream{events: make(chan string), opened: make(chan string, 1), ended: make(chan string, 1),
		greeting: greeting}
	url := gatewayInFront(t, fake)
	sid := initSession(t, url)
	stream := testenv.DialStream(t, url, sid, "")
	select {
	case <-fake.opened:
	case <-time.After(5 * time.Second):
		t.Fatal("the gateway opened no standalone stream upstream")
	}
	return fake, url, sid, stream
}

// standaloneReaders counts the goroutines reading an upstream standalone
// stream (in process: this test's gateway only).
func standaloneReaders() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), "gateway.(*Server).pumpStandalone(")
}

// TestIdleStandaloneStreamParks: an upstream standalone stream with no
// input holds no goroutine in the gateway (it waits in the upstream
// transport's poller); an event wakes a reader that relays it, and the
// reader parks again once the stream has been idle for a second; after a
// long idle stretch events still arrive, and closing the session ends the
// parked stream (goleak in TestMain checks nothing is left).
func TestIdleStandaloneStreamParks(t *testing.T) {
	fake, url, sid, stream := pushingStandalone(t, "")
	require.Eventually(t, func() bool { return standaloneReaders() == 0 }, 5*time.Second, 5*time.Millisecond,
		"a fresh stream with no input is parked at once")

	for i := range 3 {
		fake.events <- fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":%d}}`, i)
		stream.Until(t, fmt.Sprintf(`"data":%d}`, i))
		require.Eventually(t, func() bool { return standaloneReaders() == 0 }, 5*time.Second, 20*time.Millisecond,
			"the reader parks again after the idle period")
	}
	// Events in a row.
	for i := 3; i < 6; i++ {
		fake.events <- fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":%d}}`, i)
		stream.Until(t, fmt.Sprintf(`"data":%d}`, i))
		assert.LessOrEqual(t, standaloneReaders(), 1, "one reader at a time")
	}
	require.Eventually(t, func() bool { return standaloneReaders() == 0 }, 5*time.Second, 20*time.Millisecond,
		"the reader parks again after events in a row")

	req, err := http.NewRequest(http.MethodDelete, url, nil)
	require.NoError(t, err)
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("MCP-Protocol-Version", "2025-11-25")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	select {
	case <-fake.ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the session's end did not end its parked upstream stream")
	}
	require.Eventually(t, func() bool { return standaloneReaders() == 0 }, 5*time.Second, 20*time.Millisecond)
}

// TestNewStandaloneStreamParksAfterGreeting: an upstream that greets a new
// standalone stream (a comment here; SDK servers send a priming event)
// wakes the gateway's reader at once; once the greeting is read the reader
// parks without waiting out the idle period (a second), so opening many
// streams does not hold a goroutine each. Events still arrive afterwards.
func TestNewStandaloneStreamParksAfterGreeting(t *testing.T) {
	fake, _, _, stream := pushingStandalone(t, ": ok\n\n")
	// Watch for longer than the idle period: a reader that waited it out
	// is still there after 700 ms.
	start := time.Now()
	var lastSeen time.Duration
	for time.Since(start) < 1300*time.Millisecond {
		if standaloneReaders() > 0 {
			lastSeen = time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	assert.Less(t, lastSeen, 700*time.Millisecond, "the reader waited out the idle period after the greeting")

	fake.events <- `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":1}}`
	stream.Until(t, `"data":1}`)
}

// retryingUpstream is a Streamable HTTP server whose standalone stream
// sends one event with a retry hint of retry milliseconds, then breaks. It
// records when each GET came and when the first one ended.
type retryingUpstream struct {
	retry int
	mu    sync.Mutex
	gets  []time.Time
	ended time.Time
}

func (u *retryingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
		answerPost(w, r, "retrying")
	case http.MethodGet:
		u.mu.Lock()
		u.gets = append(u.gets, time.Now())
		n := len(u.gets)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		if n > 1 {
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		fmt.Fprintf(w, "id: s_1\nretry: %d\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":1}}\n\n", u.retry)
		w.(http.Flusher).Flush()
		u.mu.Lock()
		u.ended = time.Now()
		u.mu.Unlock()
	case http.MethodDelete:
		w.WriteHeader(http.StatusOK)
	}
}

// TestStandaloneReconnectHonoursRetry: the gateway reopens a broken
// upstream standalone stream after the reconnection time the upstream's
// SSE retry field set (PROTOCOL.md section 3, rule 4), not after its own
// shorter backoff; a hint of 0 does not make it spin.
func TestStandaloneReconnectHonoursRetry(t *testing.T) {
	for _, tc := range []struct {
		retry    int
		min, max time.Duration
	}{
		{retry: 1500, min: 1400 * time.Millisecond, max: 5 * time.Second},
		{retry: 0, min: 90 * time.Millisecond, max: time.Second},
	} {
		t.Run(fmt.Sprint(tc.retry), func(t *testing.T) {
			fake := &retryingUpstream{retry: tc.retry}
			url := gatewayInFront(t, fake)
			sid := initSession(t, url)
			require.NotEmpty(t, sid)
			stream := testenv.DialStream(t, url, sid, "")
			stream.Until(t, `"data":1}`)
			require.Eventually(t, func() bool {
				fake.mu.Lock()
				defer fake.mu.Unlock()
				return len(fake.gets) >= 2
			}, 10*time.Second, 10*time.Millisecond)
			fake.mu.Lock()
			defer fake.mu.Unlock()
			gap := fake.gets[1].Sub(fake.ended)
			assert.GreaterOrEqual(t, gap, tc.min, "reconnected before the upstream's retry time")
			assert.Less(t, gap, tc.max)
		})
	}
}
