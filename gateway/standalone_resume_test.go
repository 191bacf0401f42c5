package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
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
		body, _ := io.ReadAll(r.Body)
		if !strings.Contains(string(body), `"initialize"`) {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Mcp-Session-Id", "up-1")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"resuming","version":"1"}}}`)
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

// readStandalone opens a session through a gateway in front of fake and
// its standalone stream, and checks that the stream's messages carry
// exactly the given data values, in order.
func readStandalone(t *testing.T, fake *resumingUpstream, want ...int) {
	t.Helper()
	us := httptest.NewServer(fake)
	t.Cleanup(us.Close)
	tr, err := upstream.NewHTTP(upstream.HTTPConfig{URL: us.URL + "/mcp", Timeout: 5 * time.Second})
	require.NoError(t, err)
	_, url := serveInProcess(t, gateway.Config{Upstream: tr, UpstreamEra: gateway.UpstreamEraSession})

	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	sid := resp.Header.Get("Mcp-Session-Id")
	require.NotEmpty(t, sid)

	get, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	get.Header.Set("Accept", "text/event-stream")
	get.Header.Set("Mcp-Session-Id", sid)
	get.Header.Set("MCP-Protocol-Version", "2025-11-25")
	stream, err := http.DefaultClient.Do(get)
	require.NoError(t, err)
	defer stream.Body.Close()
	require.Equal(t, http.StatusOK, stream.StatusCode)

	got := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(stream.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok && d != "" {
				got <- d
			}
		}
		close(got)
	}()
	for _, w := range want {
		select {
		case d := <-got:
			assert.Contains(t, d, fmt.Sprintf(`"data":%d`, w), "event %d, in order, once", w)
		case <-time.After(10 * time.Second):
			t.Fatalf("event %d never arrived", w)
		}
	}
}
