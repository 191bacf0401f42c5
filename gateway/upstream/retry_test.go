package upstream

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHugeRetryIsCapped: an upstream's retry hint beyond maxResumeDelay
// waits maxResumeDelay before the resume; a hint so large that converting
// it to a Duration overflows must not turn into an immediate reconnect.
func TestHugeRetryIsCapped(t *testing.T) {
	ws := newWireServer(t)
	tr := newTransport(t, ws.URL, time.Second)
	s := connectSession(t, ws, tr)
	ws.setPost(func(w http.ResponseWriter, r *http.Request, body string) {
		w.Header().Set("Content-Type", "text/event-stream")
		sseWrite(w, "id: p1\nretry: 9223372036854775807\ndata: \n\n")
	})
	var gets atomic.Int32
	ws.setGet(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		w.WriteHeader(http.StatusNotFound)
	})
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call"}`))
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = r.Stream.Next()
	}()
	time.Sleep(time.Second)
	_ = r.Stream.Close()
	<-done
	require.Zero(t, gets.Load(), "the stream was resumed at once, not after the (capped) retry delay")
}
