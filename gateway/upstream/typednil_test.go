package upstream

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFailedOpenReturnsNilStream: when the upstream refuses a resumed or
// standalone stream, the Stream returned with the error must be nil, not a
// nil *httpStream in a non-nil interface: the gateway's cluster takeover
// checks `up == nil` after a failed ResumeStream and would otherwise pump a
// nil stream (nil pointer dereference).
func TestFailedOpenReturnsNilStream(t *testing.T) {
	ws := newWireServer(t)
	tr := newTransport(t, ws.URL, time.Second)
	s := connectSession(t, ws, tr)
	ws.setGet(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusBadRequest) })
	ctx := context.Background()
	for name, open := range map[string]func() (Stream, error){
		"ResumeStream": func() (Stream, error) { return s.(StreamResumer).ResumeStream(ctx, "ev-1") },
		"ListenAfter":  func() (Stream, error) { return s.(ListenResumer).ListenAfter(ctx, "ev-1") },
		"Listen":       func() (Stream, error) { return s.Listen(ctx) },
	} {
		st, err := open()
		require.Error(t, err, name)
		if st != nil {
			t.Errorf("%s failed (%v) but returned a non-nil Stream %T(%v)", name, err, st, st)
		}
	}
}
