package mockup

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// FuzzHandler feeds arbitrary POST bodies and headers to the MCP handler (its trust
// boundary): it must not panic, must answer with a status from the protocol's set, and
// every JSON body it writes must be valid JSON.
func FuzzHandler(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}`), "", "", "")
	f.Add([]byte(`{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"size":3,"text":"\u00e9\"\\"}}}`), "s", "2025-06-18", "")
	f.Add([]byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`), "", "2026-07-28", "tools/call")
	f.Add([]byte(`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`), "s", "", "")
	f.Add([]byte(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}`), "s", "", "")
	f.Add([]byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"stream","arguments":{"count":2},"_meta":{"progressToken":1}}}`), "s", "", "")
	f.Add([]byte(`{"id":null,"result":{}}`), "s", "", "")
	f.Fuzz(func(t *testing.T, body []byte, sid, version, mcpMethod string) {
		srv, err := New(Config{MaxStreamCount: 4, MaxPayload: 64, Heartbeat: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
		}()
		// A live session so that requests naming "s" reach the session code.
		var init fasthttp.RequestCtx
		init.Request.Header.SetMethod(fasthttp.MethodPost)
		init.Request.Header.SetContentType("application/json")
		init.Request.Header.Set("Accept", "*/*")
		init.Request.SetBodyString(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}`)
		srv.Handler(&init)
		if sid == "s" {
			sid = string(init.Response.Header.Peek("Mcp-Session-Id"))
		}

		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(fasthttp.MethodPost)
		ctx.Request.Header.SetContentType("application/json")
		ctx.Request.Header.Set("Accept", "application/json, text/event-stream")
		if sid != "" {
			ctx.Request.Header.Set("Mcp-Session-Id", sid)
		}
		if version != "" {
			ctx.Request.Header.Set("MCP-Protocol-Version", version)
		}
		if mcpMethod != "" {
			ctx.Request.Header.Set("Mcp-Method", mcpMethod)
		}
		ctx.Request.SetBody(body)
		srv.Handler(&ctx)
		switch status := ctx.Response.StatusCode(); status {
		case 200, 202, 400, 404, 405, 415, 503:
		default:
			t.Fatalf("status %d", status)
		}
		if ctx.Response.IsBodyStream() {
			return // an SSE answer; its events are checked by the stream tests
		}
		if b := ctx.Response.Body(); len(b) > 0 && !json.Valid(b) {
			t.Fatalf("invalid JSON answer %q", b)
		}
	})
}
