package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
)

// TestClusterWholeAnswerWaitsForTheStore: an SSE answer that finishes
// within the whole-answer window goes out as one body, and on a cluster
// node a reader gets an event only once JetStream acknowledged it. The
// whole answer waits for those acknowledgements (or is streamed): written
// before, it held the priming event alone, and the response was lost
// without an error. A forwarded call meets it at once: the owner's relay
// brings the response and the stream's end together (a stdio session's
// first request forwarded to the node that just re-initialized it, in
// TestClusterStdioForwarding). A log message comes first: a response
// alone that comes at once is answered as JSON (earlyanswer.go), on the
// forwarding node too.
func TestClusterWholeAnswerWaitsForTheStore(t *testing.T) {
	for _, via := range []string{"owner", "forwarded"} {
		t.Run(via, func(t *testing.T) {
			fnet := newFakeNet()
			upA := testenv.NewFakeUpstream(t).On("tools/list", testenv.Stream(
				testenv.Notify("notifications/message", `{"level":"info","data":"listing"}`),
				testenv.Respond(`{"tools":[{"name":"answered"}]}`)))
			_, urlA := fakeClusterServer(t, fnet, "a", upA, Config{})
			_, urlB := fakeClusterServer(t, fnet, "b", testenv.NewFakeUpstream(t), Config{})
			sid := liveSession(t, urlA)
			fnet.mu.Lock()
			fnet.ackDelay = 10 * time.Millisecond // well within the whole-answer window
			fnet.mu.Unlock()

			url := urlA
			if via == "forwarded" {
				url = urlB
			}
			for i := range 3 {
				code, _, body := mcpPost(t, url, sid, `{"jsonrpc":"2.0","id":7,"method":"tools/list"}`)
				require.Equal(t, http.StatusOK, code, body)
				assert.Contains(t, body, "data: ", "call %d: an SSE answer", i)
				assert.Contains(t, body, `"answered"`, "call %d: the response is lost", i)
				assert.Contains(t, body, `"id":7`, "call %d", i)
			}
		})
	}
}
