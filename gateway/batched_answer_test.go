package gateway

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/sse"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// TestStreamedBatchOfResponsesGetsClientIDs: a 2025-03-26 upstream may
// batch the responses on a POST's SSE answer stream ("These responses MAY
// be batched"). Each response must reach the client under the client's
// id, as a JSON answer's batch does (clientAnswer), and the calls it
// answers are answered: no gateway-assigned id may leak to the client, and
// no "ended before the response" error may follow.
func TestStreamedBatchOfResponsesGetsClientIDs(t *testing.T) {
	tr := &scriptTransport{version: "2025-03-26"}
	tr.send = func(body []byte) (*upstream.Reply, error) {
		var answers []string
		for _, id := range requestIDs(t, body) {
			answers = append(answers, `{"jsonrpc":"2.0","id":`+id+`,"result":{"tools":[]}}`)
		}
		if len(answers) == 0 {
			return &upstream.Reply{Accepted: true}, nil
		}
		batch := "[" + strings.Join(answers, ",") + "]"
		return &upstream.Reply{Stream: &scriptedStream{msgs: []string{batch}}}, nil
	}
	s := newScriptServer(t, tr, Config{})
	sid := scriptInit(t, s, "2025-03-26")
	ctx := scriptDo(s, fasthttp.MethodPost, sid, "2025-03-26",
		`[{"jsonrpc":"2.0","id":"a","method":"tools/list"},{"jsonrpc":"2.0","id":"b","method":"tools/list"}]`)
	require.Equal(t, 200, ctx.Response.StatusCode(), "%s", ctx.Response.Body())

	var body []byte
	if bs := ctx.Response.BodyStream(); bs != nil {
		body, _ = io.ReadAll(bs)
		_ = ctx.Response.CloseBodyStream()
	} else {
		body = ctx.Response.Body()
	}
	got := map[string]jsonrpc.Kind{}
	if string(ctx.Response.Header.ContentType()) == "application/json" {
		var p jsonrpc.Parser
		msgs, _, perr := p.Parse(body)
		require.Nil(t, perr, "%s", body)
		for _, m := range msgs {
			got[string(m.ID)] = m.Kind
		}
	} else {
		d := sse.NewDecoder(bytes.NewReader(body), 0)
		for {
			ev, err := d.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			if len(bytes.TrimSpace(ev.Data)) == 0 {
				continue
			}
			var p jsonrpc.Parser
			msgs, _, perr := p.Parse(ev.Data)
			require.Nil(t, perr, "%s", ev.Data)
			for _, m := range msgs {
				got[string(m.ID)] = m.Kind
			}
		}
	}
	require.Equal(t, map[string]jsonrpc.Kind{`"a"`: jsonrpc.KindResponse, `"b"`: jsonrpc.KindResponse}, got,
		"answers the client got:\n%s", body)
}
