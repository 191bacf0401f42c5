package gateway

import (
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// listStream is an upstream answer stream that yields msgs, then io.EOF.
// Next is called by one goroutine at a time, Close by any.
type listStream struct {
	msgs   []string
	closed atomic.Bool
}

func (l *listStream) Next() ([]byte, error) {
	if l.closed.Load() || len(l.msgs) == 0 {
		return nil, io.EOF
	}
	m := l.msgs[0]
	l.msgs = l.msgs[1:]
	return []byte(m), nil
}

func (l *listStream) Close() error { l.closed.Store(true); return nil }

// TestBatchProgressAfterResponseDropped (PROTOCOL.md section 2, rule 36):
// no progress after the response. A batch (2025-03-26) of two calls is
// answered on one stream, where the upstream sends progress for the first
// call after that call's response: the client must not get it (its call
// is over); the second call's progress before its response passes.
func TestBatchProgressAfterResponseDropped(t *testing.T) {
	progress := func(tok string) string {
		return `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"` + tok + `","progress":1}}`
	}
	tr := &scriptTransport{version: "2025-03-26"}
	tr.send = func(body []byte) (*upstream.Reply, error) {
		ids := requestIDs(t, body)
		if len(ids) != 2 {
			return &upstream.Reply{Accepted: true}, nil
		}
		return &upstream.Reply{Stream: &listStream{msgs: []string{
			progress("a"),
			`{"jsonrpc":"2.0","id":` + ids[0] + `,"result":{}}`,
			progress("a"), // after its call's response: late
			progress("b"),
			`{"jsonrpc":"2.0","id":` + ids[1] + `,"result":{}}`,
		}}}, nil
	}
	s := newScriptServer(t, tr, Config{})
	sid := scriptInit(t, s, "2025-03-26")
	ctx := scriptDo(s, fasthttp.MethodPost, sid, "", `[`+
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","_meta":{"progressToken":"a"}}},`+
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b","_meta":{"progressToken":"b"}}}]`)
	require.Equal(t, 200, ctx.Response.StatusCode())
	var data []string
	for _, line := range strings.Split(string(ctx.Response.Body()), "\n") {
		if d, ok := strings.CutPrefix(line, "data: "); ok && d != "" {
			data = append(data, d)
		}
	}
	assert.Equal(t, []string{
		progress("a"),
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
		progress("b"),
		`{"jsonrpc":"2.0","id":2,"result":{}}`,
	}, data)
}
