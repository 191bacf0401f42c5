package gateway

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// TestBatchOfOneAnsweredAsArray: a 2025-03-26 client's batch holding one
// request (and a notification), sent to an upstream that answers calls with
// a stream of their messages (stdio, legacy HTTP+SSE), must be answered
// with a JSON array (JSON-RPC 2.0 section 6), not a bare response object.
func TestBatchOfOneAnsweredAsArray(t *testing.T) {
	tr := &scriptTransport{version: "2025-03-26"}
	tr.send = func(body []byte) (*upstream.Reply, error) {
		if ids := requestIDs(t, body); len(ids) > 0 {
			return &upstream.Reply{Stream: &scriptedStream{msgs: []string{`{"jsonrpc":"2.0","id":` + ids[0] + `,"result":{"tools":[]}}`}, wait: 9}}, nil
		}
		return &upstream.Reply{Accepted: true}, nil
	}
	s := newScriptServer(t, tr, Config{})
	sid := scriptInit(t, s, "2025-03-26")
	ctx := scriptDo(s, fasthttp.MethodPost, sid, "2025-03-26",
		`[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":"a","method":"tools/list"}]`)
	require.Equal(t, 200, ctx.Response.StatusCode(), "%s", ctx.Response.Body())
	require.Equal(t, "application/json", string(ctx.Response.Header.ContentType()))
	var arr []map[string]any
	require.NoError(t, json.Unmarshal(ctx.Response.Body(), &arr), "a batch must be answered with an array, got %s", ctx.Response.Body())
	require.Len(t, arr, 1)
	require.Equal(t, "a", arr[0]["id"])
}
