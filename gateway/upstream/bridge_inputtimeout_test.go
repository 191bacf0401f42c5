package upstream

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStatelessBridgeInputTimeout: a session-era client over a stateless
// upstream never answers the elicitation of an input round (it went away).
// The call must not wait forever: after InputTimeout it ends with a JSON-RPC
// error response and EOF, so the gateway sees it answered and the session
// can go idle; the client's late answer is dropped without a retry upstream.
func TestStatelessBridgeInputTimeout(t *testing.T) {
	up := &scriptedStateless{}
	up.handler = func(method string, body []byte) *Reply {
		e, _ := decodeEnvelope(body)
		if method == "server/discover" {
			return &Reply{JSON: []byte(result(e.ID, `{"resultType":"complete","capabilities":{}}`))}
		}
		return &Reply{JSON: []byte(result(e.ID, `{"resultType":"input_required","requestState":"s1","inputRequests":{`+
			`"name":{"method":"elicitation/create","params":{"message":"name?"}}}}`))}
	}
	const bound = 100 * time.Millisecond
	tr := NewStatelessBridge(up, BridgeConfig{InputTimeout: bound})
	s, _, err := tr.Connect(context.Background(), []byte(initReq))
	require.NoError(t, err)
	defer s.Close(context.Background())
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ask"}}`))
	require.NoError(t, err)
	require.NotNil(t, r.Stream)
	defer r.Stream.Close() // also ends a Next still waiting when the test fails
	ask, err := r.Stream.Next()
	require.NoError(t, err)
	e, ok := decodeEnvelope(ask)
	require.True(t, ok)
	require.Equal(t, "elicitation/create", e.Method)
	exchanges := len(up.exchanges())

	// The gateway's pump reads on while the client stays silent.
	type read struct {
		msg []byte
		err error
	}
	got := make(chan read, 2)
	go func() {
		for {
			m, err := r.Stream.Next()
			got <- read{m, err}
			if err != nil {
				return
			}
		}
	}()
	start := time.Now()
	select {
	case rd := <-got:
		require.NoError(t, rd.err)
		assert.JSONEq(t, `{"jsonrpc":"2.0","id":5,"error":{"code":-32603,"message":"Request timeout: the client did not answer the server's requests (sampling, elicitation, roots) within 100ms"}}`, string(rd.msg))
		assert.GreaterOrEqual(t, time.Since(start), bound/2, "the bound is not cut short")
	case <-time.After(5 * time.Second):
		t.Fatal("the call still waits for the client's answers long after InputTimeout")
	}
	select {
	case rd := <-got:
		assert.ErrorIs(t, rd.err, io.EOF, "the call ends after its error response")
	case <-time.After(5 * time.Second):
		t.Fatal("the call did not end after its error response")
	}

	// The client's answer comes too late: it is accepted and dropped, and
	// nothing more goes upstream.
	late, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":`+string(e.ID)+`,"result":{"action":"accept","content":{"name":"Ada"}}}`))
	require.NoError(t, err)
	assert.True(t, late.Accepted)
	assert.Len(t, up.exchanges(), exchanges, "no retry goes upstream after the call timed out")
	bs := s.(*bridgeSession)
	bs.mu.Lock()
	assert.Empty(t, bs.waiting, "the timed-out call's input requests are forgotten")
	bs.mu.Unlock()
}
