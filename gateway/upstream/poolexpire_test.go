package upstream

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// askingTransport's sessions answer tools/call with a stream carrying an
// elicitation request and nothing more (the server waits for the answer);
// every message sent is recorded.
type askingTransport struct {
	mu   sync.Mutex
	sent []string
	// silent: the stream carries nothing at all (a slow call).
	silent bool
}

func (t *askingTransport) Close() error { return nil }
func (t *askingTransport) Connect(context.Context, []byte) (Session, []byte, error) {
	return &askingSession{t: t}, []byte(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{}}}`), nil
}

func (t *askingTransport) sentLines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.sent...)
}

type askingSession struct{ t *askingTransport }

func (s *askingSession) ID() string                             { return "" }
func (s *askingSession) Version() string                        { return "2025-11-25" }
func (s *askingSession) Listen(context.Context) (Stream, error) { return nil, ErrNotSupported }
func (s *askingSession) Close(context.Context) error            { return nil }
func (s *askingSession) Send(_ context.Context, body []byte) (*Reply, error) {
	s.t.mu.Lock()
	s.t.sent = append(s.t.sent, string(body))
	s.t.mu.Unlock()
	e, _ := decodeEnvelope(body)
	if e.Method != "tools/call" {
		return &Reply{Accepted: true}, nil
	}
	if s.t.silent {
		return &Reply{Stream: &sliceStream{block: make(chan struct{})}}, nil
	}
	return &Reply{Stream: &sliceStream{block: make(chan struct{}),
		msgs: []string{`{"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{"message":"name?"}}`}}}, nil
}

// TestPoolParkedCallExpires: a stateless client that never retries an
// input_required result leaves the upstream call waiting for its input.
// After InputTimeout the pool cancels that call upstream (a session-era
// server is told by notifications/cancelled, not by a closed stream), with
// no further request needed to notice, and the requestState is refused.
func TestPoolParkedCallExpires(t *testing.T) {
	tr := &askingTransport{}
	p := NewSessionPool(tr, BridgeConfig{InputTimeout: 50 * time.Millisecond}).(*sessionPool)
	defer p.Close()
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}`
	r, err := p.Do(context.Background(), nil, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ask","arguments":{},`+meta+`}}`))
	require.NoError(t, err)
	require.NotNil(t, r.JSON)
	require.Contains(t, string(r.JSON), `"resultType":"input_required"`)
	state, ok := jsonrpc.Lookup(r.JSON, "result", "requestState")
	require.True(t, ok)
	require.Eventually(t, func() bool {
		for _, m := range tr.sentLines() {
			if strings.Contains(m, `"method":"notifications/cancelled"`) && strings.Contains(m, `"requestId":"s1"`) {
				return true
			}
		}
		return false
	}, 2*time.Second, 5*time.Millisecond, "the abandoned upstream call was not cancelled: %q", tr.sentLines())
	p.mu.Lock()
	parked := len(p.parked)
	p.mu.Unlock()
	assert.Zero(t, parked, "the expired call is forgotten")
	r, err = p.Do(context.Background(), nil, []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"ask","arguments":{},`+
		`"inputResponses":{"r1":{"action":"accept","content":{}}},"requestState":`+string(state)+`,`+meta+`}}`))
	require.NoError(t, err)
	assert.Contains(t, string(r.JSON), "unknown or expired requestState")
}

// TestPoolCallCancelledWhenItsRequestEnds: a pooled call whose request
// ends (its client gone, or the upstream timeout passed) before the
// upstream's first message is cancelled upstream: a session-era server
// takes a closed stream for no cancellation and would go on working.
func TestPoolCallCancelledWhenItsRequestEnds(t *testing.T) {
	tr := &askingTransport{silent: true}
	p := NewSessionPool(tr, BridgeConfig{}).(*sessionPool)
	defer p.Close()
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := p.Do(ctx, nil, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","arguments":{},`+meta+`}}`))
	require.Error(t, err)
	cancelled := false
	for _, m := range tr.sentLines() {
		if strings.Contains(m, `"method":"notifications/cancelled"`) && strings.Contains(m, `"requestId":"s1"`) {
			cancelled = true
		}
	}
	assert.True(t, cancelled, "the upstream call was left running: %q", tr.sentLines())
}
