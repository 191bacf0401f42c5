package gateway_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// TestStateReinitRelaysServerRequests: while a restored session's upstream
// is re-initialized, the upstream may ask the client something as soon as
// it has notifications/initialized (a server asks for roots/list then),
// and a stdio or legacy upstream's demux routes that request to the newest
// call in flight: a replayed request (logging/setLevel here). The request
// still reaches the client on its standalone stream, where it can answer
// it; it is not read and dropped with the replayed request's answer.
func TestStateReinitRelaysServerRequests(t *testing.T) {
	const rootsList = `{"jsonrpc":"2.0","id":"srv-roots","method":"roots/list"}`
	fake := testenv.NewFakeUpstream(t)
	fake.On("logging/setLevel", testenv.Result(`{}`),
		testenv.Stream(testenv.Msg(rootsList), testenv.Respond(`{}`)))
	cfg := gateway.Config{Upstream: fake, StateFile: filepath.Join(t.TempDir(), "state"), DrainWindow: -1}
	g1 := startLive(t, cfg)
	sid := g1.initialize()
	code, body := g1.postJSON(sid, `{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"info"}}`)
	require.Equal(t, http.StatusOK, code, body)
	resp, _ := g1.get(sid, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	g1.stop()

	g2 := startLive(t, cfg)
	resp, r := g2.get(sid, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	got := make(chan string, 16)
	go func() {
		defer close(got)
		for {
			ev, ok := r.next()
			if !ok {
				return
			}
			got <- ev.data
		}
	}()
	// The client's request re-initializes the upstream side if the stream
	// did not already.
	code, body = g2.postJSON(sid, `{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	require.Equal(t, http.StatusOK, code, body)
	fake.WaitFor(t, "the replayed setLevel", func(v *testenv.FakeView) bool { return v.Count("connect") == 2 && v.Sent("mcpgate-replay") })
	deadline := time.After(5 * time.Second)
	var seen []string
	for {
		select {
		case data, ok := <-got:
			require.True(t, ok, "the stream ended; events: %v", seen)
			if strings.Contains(data, `"roots/list"`) {
				// Under an id of the new upstream incarnation
				// (incarnation.go), which maps back to the upstream's.
				id, ok := jsonrpc.Lookup([]byte(data), "id")
				require.True(t, ok, data)
				require.JSONEq(t, strings.Replace(rootsList, `"srv-roots"`, string(id), 1), data)
				require.Contains(t, string(id), `srv-roots`)
				return
			}
			seen = append(seen, data)
		case <-deadline:
			t.Fatalf("the upstream's roots/list request never reached the client; events: %v", seen)
		}
	}
}
