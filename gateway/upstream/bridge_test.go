package upstream

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// scriptedStateless is an upstream of the stateless revision: handler
// answers each request; every exchange is recorded.
type scriptedStateless struct {
	mu      sync.Mutex
	seen    []scriptedExchange
	handler func(method string, body []byte) *Reply
}

type scriptedExchange struct {
	hdr  map[string]string
	body string
}

func (s *scriptedStateless) Do(_ context.Context, hdr []Header, body []byte) (*Reply, error) {
	h := map[string]string{}
	for _, x := range hdr {
		h[x.Name] = x.Value
	}
	s.mu.Lock()
	s.seen = append(s.seen, scriptedExchange{h, string(body)})
	s.mu.Unlock()
	m, _ := decodeEnvelope(body)
	return s.handler(m.Method, body), nil
}

func (s *scriptedStateless) exchanges() []scriptedExchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]scriptedExchange(nil), s.seen...)
}

// sliceStream yields fixed messages, then EOF.
type sliceStream struct {
	mu     sync.Mutex
	msgs   []string
	closed bool
	block  chan struct{} // if set, Next blocks after the messages until Close
}

func (s *sliceStream) Next() ([]byte, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, io.ErrClosedPipe
	}
	if len(s.msgs) > 0 {
		m := s.msgs[0]
		s.msgs = s.msgs[1:]
		s.mu.Unlock()
		return []byte(m), nil
	}
	block := s.block
	s.mu.Unlock()
	if block != nil {
		<-block
		return nil, io.ErrClosedPipe
	}
	return nil, io.EOF
}

func (s *sliceStream) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed && s.block != nil {
		close(s.block)
	}
	s.closed = true
	return nil
}

func result(id json.RawMessage, r string) string {
	return `{"jsonrpc":"2.0","id":` + string(id) + `,"result":` + r + `}`
}

// TestStatelessBridgeSession: a session-era client over a stateless
// upstream. initialize comes from server/discover; requests carry the
// revision's _meta and headers; ping and setLevel stay local; an
// input_required result becomes server-to-client requests (elicitation and
// sampling) whose answers complete the call; the standalone stream is a
// subscriptions/listen whose filter follows resources/subscribe.
func TestStatelessBridgeSession(t *testing.T) {
	up := &scriptedStateless{}
	listens := make(chan *sliceStream, 4)
	up.handler = func(method string, body []byte) *Reply {
		e, _ := decodeEnvelope(body)
		switch method {
		case "server/discover":
			return &Reply{JSON: []byte(result(e.ID, `{"resultType":"complete","supportedVersions":["2026-07-28"],`+
				`"capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true}},"_meta":{"io.modelcontextprotocol/serverInfo":{"name":"up","version":"9"}}}`))}
		case "tools/call":
			if _, retry := jsonrpc.Lookup(e.Params, "inputResponses"); retry {
				state, _ := jsonrpc.Lookup(e.Params, "requestState")
				ir, _ := jsonrpc.Lookup(e.Params, "inputResponses")
				return &Reply{Stream: &sliceStream{msgs: []string{
					`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"debug","data":"quiet"}}`,
					`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"error","data":"loud"}}`,
					result(e.ID, `{"resultType":"complete","content":[{"type":"text","text":"state=`+strings.Trim(string(state), `"`)+` inputs=`+
						strings.ReplaceAll(string(ir), `"`, `'`)+`"}]}`),
				}}}
			}
			return &Reply{Stream: &sliceStream{msgs: []string{
				`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"p","progress":1}}`,
				result(e.ID, `{"resultType":"input_required","requestState":"s1","inputRequests":{`+
					`"name":{"method":"elicitation/create","params":{"message":"name?"}},`+
					`"llm":{"method":"sampling/createMessage","params":{"maxTokens":3,"messages":[]}}}}`),
			}}}
		case "subscriptions/listen":
			st := &sliceStream{msgs: []string{
				`{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{}}`,
				`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`,
			}, block: make(chan struct{})}
			listens <- st
			return &Reply{Stream: st}
		}
		return &Reply{JSON: errorResponse(e.ID, -32601, "nope")}
	}
	tr := NewStatelessBridge(up, BridgeConfig{})
	init := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{},"elicitation":{}},"clientInfo":{"name":"c","version":"1"}}}`
	s, answer, err := tr.Connect(context.Background(), []byte(init))
	require.NoError(t, err)
	require.NotNil(t, s, "%s", answer)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true}},"serverInfo":{"name":"up","version":"9"}}}`, string(answer))
	assert.Equal(t, "2025-06-18", s.Version())

	ping, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	require.NoError(t, err)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{}}`, string(ping.JSON))
	lvl, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"warning"}}`))
	require.NoError(t, err)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":2,"result":{}}`, string(lvl.JSON))
	assert.Len(t, up.exchanges(), 1, "ping and setLevel stay in the gateway")

	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"ask","arguments":{},"_meta":{"progressToken":"p"}}}`))
	require.NoError(t, err)
	require.NotNil(t, r.Stream)
	ex := up.exchanges()[1]
	assert.Equal(t, map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "ask"}, ex.hdr)
	for _, want := range []string{`"progressToken":"p"`, `"io.modelcontextprotocol/protocolVersion":"2026-07-28"`,
		`"io.modelcontextprotocol/clientCapabilities":{"sampling":{},"elicitation":{}}`, `"io.modelcontextprotocol/logLevel":"warning"`,
		`"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"}`} {
		assert.Contains(t, ex.body, want)
	}
	next := func() string {
		t.Helper()
		m, err := r.Stream.Next()
		require.NoError(t, err)
		return string(m)
	}
	assert.Contains(t, next(), `notifications/progress`)
	asks := []string{next(), next()}
	var ids []string
	for _, a := range asks {
		e, ok := decodeEnvelope([]byte(a))
		require.True(t, ok)
		ids = append(ids, string(e.ID))
	}
	assert.Contains(t, asks[0]+asks[1], `"method":"elicitation/create"`)
	assert.Contains(t, asks[0]+asks[1], `"method":"sampling/createMessage"`)
	for i, id := range ids {
		res := `{"action":"accept","content":{"name":"Ada"}}`
		if strings.Contains(asks[i], "sampling") {
			res = `{"role":"assistant","content":{"type":"text","text":"x"},"model":"m"}`
		}
		a, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":`+id+`,"result":`+res+`}`))
		require.NoError(t, err)
		assert.True(t, a.Accepted)
	}
	log := next()
	assert.Contains(t, log, `"loud"`, "the debug log below warning is filtered out")
	final := next()
	assert.Contains(t, final, `"id":3`)
	assert.Contains(t, final, `state=s1`)
	assert.Contains(t, final, `'name':{'action':'accept'`)
	assert.Contains(t, final, `'llm':{'role':'assistant'`)
	assert.NotContains(t, final, "resultType", "a session-era client gets a session-era result")
	_, err = r.Stream.Next()
	assert.ErrorIs(t, err, io.EOF)
	require.NoError(t, r.Stream.Close())

	l, err := s.Listen(context.Background())
	require.NoError(t, err)
	first := <-listens
	m, err := l.Next()
	require.NoError(t, err)
	assert.Contains(t, string(m), "tools/list_changed", "the acknowledgement is not passed on")
	ex = up.exchanges()[len(up.exchanges())-1]
	assert.Contains(t, ex.body, `"notifications":{"toolsListChanged":true}`)
	sub, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{"uri":"file:///a"}}`))
	require.NoError(t, err)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":4,"result":{}}`, string(sub.JSON))
	got := make(chan string, 1)
	go func() {
		m, _ := l.Next() // the filter changed: the listen reopens
		got <- string(m)
	}()
	second := <-listens
	assert.Contains(t, <-got, "tools/list_changed")
	ex = up.exchanges()[len(up.exchanges())-1]
	assert.Contains(t, ex.body, `"resourceSubscriptions":["file:///a"]`)
	first.mu.Lock()
	assert.True(t, first.closed, "the old listen was closed")
	first.mu.Unlock()
	require.NoError(t, s.Close(context.Background()))
	second.mu.Lock()
	assert.True(t, second.closed)
	second.mu.Unlock()
}

// TestStatelessBridgeConnectBoundedByTimeout: a stateless upstream that
// opens an SSE answer to server/discover and sends nothing fails the
// bridged initialize within BridgeConfig.Timeout (ErrTimeout), closing the
// stream; the client's initialize no longer waits for as long as the
// upstream keeps it open.
func TestStatelessBridgeConnectBoundedByTimeout(t *testing.T) {
	held := &sliceStream{block: make(chan struct{})}
	up := &scriptedStateless{handler: func(string, []byte) *Reply { return &Reply{Stream: held} }}
	b := NewStatelessBridge(up, BridgeConfig{Timeout: 200 * time.Millisecond, Versions: []string{"2025-06-18"}})
	done := make(chan error, 1)
	go func() {
		_, _, err := b.Connect(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`))
		done <- err
	}()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, ErrTimeout)
	case <-time.After(5 * time.Second):
		_ = held.Close()
		t.Fatal("the bridged initialize still waits for a server/discover answer that never comes")
	}
}
