package gateway

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// TestAcceptOnTwoLines: Accept is a list-based field (RFC 9110 sections
// 5.3 and 12.5.1): a client may send its media ranges on two field lines,
// which mean the same as one line joined with a comma. The gateway must
// not answer 406 to a POST whose Accept lines together name both types.
func TestAcceptOnTwoLines(t *testing.T) {
	tr := &scriptTransport{version: "2025-06-18"}
	tr.send = func(body []byte) (*upstream.Reply, error) {
		return &upstream.Reply{JSON: []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`)}, nil
	}
	s := newScriptServer(t, tr, Config{})
	sid := scriptInit(t, s, "2025-06-18")
	ctx := scriptDo(s, fasthttp.MethodPost, sid, "2025-06-18", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		[2]string{"Accept", ""}, [2]string{"Accept", "application/json"}, [2]string{"Accept", "text/event-stream"})
	require.Equal(t, 200, ctx.Response.StatusCode(), "%s", ctx.Response.Body())
}
