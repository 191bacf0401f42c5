package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBridgeAnswerSendNeverHangs: an upstream round asks for many inputs;
// the client refuses the first (which ends the call) and answers the rest in
// the same batch POST. That POST must return, at the latest once the call is
// closed; it must not block forever handing an answer to a call that stopped
// collecting them.
func TestBridgeAnswerSendNeverHangs(t *testing.T) {
	const inputs = 18
	up := &scriptedStateless{}
	up.handler = func(method string, body []byte) *Reply {
		e, _ := decodeEnvelope(body)
		switch method {
		case "server/discover":
			return &Reply{JSON: []byte(result(e.ID, `{"resultType":"complete","capabilities":{}}`))}
		}
		var reqs []string
		for i := 0; i < inputs; i++ {
			reqs = append(reqs, fmt.Sprintf(`"r%02d":{"method":"elicitation/create","params":{}}`, i))
		}
		return &Reply{JSON: []byte(result(e.ID, `{"resultType":"input_required","requestState":"s1","inputRequests":{`+strings.Join(reqs, ",")+`}}`))}
	}
	tr := NewStatelessBridge(up, BridgeConfig{})
	s, _, err := tr.Connect(context.Background(), []byte(initReq))
	require.NoError(t, err)
	defer s.Close(context.Background())
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x"}}`))
	require.NoError(t, err)
	require.NotNil(t, r.Stream)
	var ids []json.RawMessage
	for i := 0; i < inputs; i++ {
		m, err := r.Stream.Next()
		require.NoError(t, err)
		e, _ := decodeEnvelope(m)
		ids = append(ids, e.ID)
	}
	// The gateway's pump goes on reading the call (it collects answers).
	read := make(chan struct{})
	go func() {
		defer close(read)
		for {
			if _, err := r.Stream.Next(); err != nil {
				return
			}
		}
	}()
	var batch []string
	batch = append(batch, `{"jsonrpc":"2.0","id":`+string(ids[0])+`,"error":{"code":-1,"message":"declined"}}`)
	for _, id := range ids[1:] {
		batch = append(batch, `{"jsonrpc":"2.0","id":`+string(id)+`,"result":{"action":"accept"}}`)
	}
	sent := make(chan error, 1)
	go func() {
		_, err := s.Send(context.Background(), []byte("["+strings.Join(batch, ",")+"]"))
		sent <- err
	}()
	select {
	case <-read:
	case <-time.After(2 * time.Second):
		t.Fatal("the call did not end after the client refused its input")
	}
	require.NoError(t, r.Stream.Close())
	select {
	case <-sent:
	case <-time.After(2 * time.Second):
		t.Fatal("the client's POST of its answers hangs forever after the call ended")
	}
}
