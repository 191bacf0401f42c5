package gateway

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// refusingStateless is an upstream of the stateless revision that answers
// server/discover and refuses every other request the revision's way: a
// JSON-RPC error under an HTTP status (404 for -32601, 400 for -32602).
type refusingStateless struct{ nopTransport }

func (refusingStateless) Do(_ context.Context, _ []upstream.Header, body []byte) (*upstream.Reply, error) {
	id, _ := jsonrpc.Lookup(body, "id")
	method, _ := jsonrpc.Lookup(body, "method")
	switch string(method) {
	case `"server/discover"`:
		return &upstream.Reply{JSON: []byte(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":{"supportedVersions":["` + statelessVersion + `"],"capabilities":{"tools":{}}}}`)}, nil
	case `"tools/call"`:
		return nil, &upstream.StatusError{Op: "stateless post", Status: 400,
			Body: jsonrpc.AppendError(nil, id, jsonrpc.CodeInvalidParams, "Unknown tool: nope", nil)}
	}
	return nil, &upstream.StatusError{Op: "stateless post", Status: 404,
		Body: jsonrpc.AppendError(nil, id, jsonrpc.CodeMethodNotFound, "Method not found", nil)}
}

// TestBridgedSessionGetsUpstreamErrorsInBand: a session-era client served
// over a stateless upstream asks for a method the server lacks and for an
// unknown tool. The revision answers those JSON-RPC errors with HTTP 404
// and 400; the session era answers them in a 200 like any response. The
// client must get the upstream's JSON-RPC error, not a 502 Bad Gateway
// (404) or an HTTP 400 that SDKs report as a transport failure.
func TestBridgedSessionGetsUpstreamErrorsInBand(t *testing.T) {
	s, err := New(Config{Upstream: refusingStateless{}, UpstreamEra: UpstreamEraStateless, DrainWindow: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	sid := scriptInit(t, s, "2025-06-18")

	ctx := scriptDo(s, fasthttp.MethodPost, sid, "2025-06-18", `{"jsonrpc":"2.0","id":7,"method":"prompts/list","params":{}}`)
	assert.Equal(t, fasthttp.StatusOK, ctx.Response.StatusCode(), "%s", ctx.Response.Body())
	assert.Contains(t, string(ctx.Response.Body()), `"id":7`)
	assert.Contains(t, string(ctx.Response.Body()), `-32601`)

	ctx = scriptDo(s, fasthttp.MethodPost, sid, "2025-06-18", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"nope","arguments":{}}}`)
	assert.Equal(t, fasthttp.StatusOK, ctx.Response.StatusCode(), "%s", ctx.Response.Body())
	assert.Contains(t, string(ctx.Response.Body()), `"id":8`)
	assert.Contains(t, string(ctx.Response.Body()), `Unknown tool: nope`)
}
