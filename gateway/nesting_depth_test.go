package gateway

import (
	"strings"
	"sync"
	"testing"

	sdkjsonrpc "github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// TestBodyNestedPastGoSDKLimitRefused: the official Go SDK decodes no
// message nested deeper than 1000 levels, and a stdio server of it ends its
// connection, with every call in flight on it, on a message it cannot
// decode. Forwarded, a client's deeply nested tools/call would end its
// upstream session; over the session pool (stateless clients, session-era
// stdio upstream) that session is shared by every client of the same
// principal, all anonymous clients included. The gateway refuses such a
// body itself (400, -32700) and forwards nothing; one at the limit passes.
func TestBodyNestedPastGoSDKLimitRefused(t *testing.T) {
	var mu sync.Mutex
	var forwarded []string
	tr := &scriptTransport{version: "2025-06-18"}
	tr.send = func(body []byte) (*upstream.Reply, error) {
		mu.Lock()
		forwarded = append(forwarded, string(body))
		mu.Unlock()
		if ids := requestIDs(t, body); len(ids) > 0 {
			return &upstream.Reply{JSON: []byte(`{"jsonrpc":"2.0","id":` + ids[0] + `,"result":{"content":[]}}`)}, nil
		}
		return &upstream.Reply{Accepted: true}, nil
	}
	s := newScriptServer(t, tr, Config{})
	sid := scriptInit(t, s, "2025-06-18")

	// The message object, params and arguments are 3 levels: x nests the rest.
	call := func(depth int) string {
		x := strings.Repeat("[", depth-3) + strings.Repeat("]", depth-3)
		return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":` + x + `}}}`
	}
	for _, c := range []struct {
		depth int
		pass  bool
	}{{clientMaxDepth, true}, {clientMaxDepth + 1, false}, {3000, false}} {
		body := call(c.depth)
		_, sdkErr := sdkjsonrpc.DecodeMessage([]byte(body))
		require.Equal(t, c.pass, sdkErr == nil, "depth %d: the Go SDK decodes it: %v", c.depth, sdkErr)

		mu.Lock()
		before := len(forwarded)
		mu.Unlock()
		ctx := scriptDo(s, fasthttp.MethodPost, sid, "2025-06-18", body)
		mu.Lock()
		n := len(forwarded) - before
		mu.Unlock()
		if c.pass {
			assert.Equal(t, 200, ctx.Response.StatusCode(), "depth %d: %s", c.depth, ctx.Response.Body())
			assert.Equal(t, 1, n, "depth %d: forwarded", c.depth)
			continue
		}
		assert.Equal(t, 400, ctx.Response.StatusCode(), "depth %d: %s", c.depth, ctx.Response.Body())
		var p jsonrpc.Parser
		msgs, _, perr := p.Parse(ctx.Response.Body())
		if assert.Nil(t, perr, "depth %d: %s", c.depth, ctx.Response.Body()) && assert.Len(t, msgs, 1) {
			assert.Equal(t, jsonrpc.KindError, msgs[0].Kind)
			code, _ := jsonrpc.Lookup(msgs[0].Raw, "error", "code")
			assert.Equal(t, "-32700", string(code), "depth %d", c.depth)
		}
		assert.Zero(t, n, "depth %d: a body the Go SDK cannot decode went upstream", c.depth)
	}
}
