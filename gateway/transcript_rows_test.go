package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/auth"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// Bodies used by many rows.
const (
	initializedNote = `{"jsonrpc":"2.0","method":"notifications/initialized"}`
	toolsListBody   = `{"jsonrpc":"2.0","id":10,"method":"tools/list"}`
	toolsResult     = `{"tools":[{"name":"slow","inputSchema":{"type":"object"}}]}`
	callResult      = `{"content":[{"type":"text","text":"done"}]}`
	pingBody        = `{"jsonrpc":"2.0","id":9,"method":"ping"}`
)

// callBody is a tools/call request with a progress token.
func callBody(id int) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"slow","arguments":{},"_meta":{"progressToken":"p%d"}}}`, id, id)
}

func logMessage(text string) testenv.Step {
	return testenv.Notify("notifications/message", `{"level":"info","data":"`+text+`"}`)
}

// transcriptRows: every row's golden is testdata/transcripts/<name>.txt.
var transcriptRows = append(append(append([]row(nil), endpointRows...), streamRows...), legacyRows...)

// endpointRows follow the README's endpoint table.
var endpointRows = []row{
	// ---- POST initialize ----
	{
		name: "initialize-then-call",
		about: `POST initialize (no session id): 200, the upstream's InitializeResult, the gateway's own Mcp-Session-Id.
Then notifications/initialized: 202, empty body; then tools/list answered by the upstream with JSON: 200.`,
		run: func(h *harness) {
			h.up.On("tools/list", testenv.Result(toolsResult))
			s := h.initialize("2025-06-18")
			h.do(post(s, initializedNote))
			h.do(post(s, toolsListBody))
		},
	},
	{
		name:  "initialize-version-fallback",
		about: `initialize asking for a version the upstream does not serve: the upstream answers its latest, which the gateway serves.`,
		run: func(h *harness) {
			s := h.initialize("2024-11-05")
			h.do(post(s, pingBody))
		},
	},
	{
		name: "initialize-upstream-answers",
		about: `initialize while the upstream: answers a JSON-RPC error (relayed, no session); negotiates a version the gateway does not
serve (502, the upstream session is closed); is unreachable (502); times out (504); refuses with HTTP 400 and a JSON-RPC
body (relayed); fails with HTTP 500 (502); finally accepts.`,
		run: func(h *harness) {
			h.up.OnConnect(
				testenv.RPCError(-32602, "Unsupported protocol version"),
				testenv.Result(`{"protocolVersion":"2024-10-07","capabilities":{},"serverInfo":{"name":"old","version":"0.1"}}`),
				testenv.Fail(upstream.ErrUnavailable),
				testenv.Fail(upstream.ErrTimeout),
				testenv.HTTPStatus(400, -32600, "Bad Request: unsupported client"),
				testenv.HTTPStatus(500, -32603, "Internal error"),
				testenv.Negotiated(),
			)
			for range 6 {
				h.do(post(nil, initializeBody("2025-06-18")))
			}
			h.initialize("2025-06-18")
		},
	},
	{
		name: "initialize-refusals",
		about: `initialize carrying Mcp-Session-Id: 400 -32600; with an unsupported MCP-Protocol-Version: 400 -32022; inside a batch:
400 -32600. Nothing reaches the upstream. A supported MCP-Protocol-Version on initialize is fine.`,
		run: func(h *harness) {
			h.do(post(nil, initializeBody("2025-06-18")).with("Mcp-Session-Id", unknownSession.id))
			h.do(post(nil, initializeBody("2025-06-18")).with("MCP-Protocol-Version", "2099-01-01"))
			h.do(post(nil, "["+initializeBody("2025-06-18")+"]"))
			h.assertSent(0, "refused initializes")
			h.do(post(nil, initializeBody("2025-06-18")).with("MCP-Protocol-Version", "2025-06-18"))
		},
	},
	// ---- POST messages ----
	{
		name: "notifications-and-responses",
		about: `POSTs holding only notifications or responses: 202 with an empty body, forwarded. A notification the upstream
refuses with HTTP 400 and a JSON-RPC body: relayed.`,
		run: func(h *harness) {
			h.up.On("notifications/roots/list_changed", testenv.HTTPStatus(400, -32600, "Refused"))
			s := h.initialize("2025-06-18")
			h.do(post(s, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"user"}}`))
			h.do(post(s, `{"jsonrpc":"2.0","id":"srv-1","result":{"roots":[]}}`))
			h.do(post(s, `{"jsonrpc":"2.0","id":"srv-2","error":{"code":-1,"message":"declined"}}`))
			h.do(post(s, `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`))
		},
	},
	{
		name: "ping-answered-locally",
		about: `POST ping: 200 {"result":{}} with the request's id, answered by the gateway (nothing reaches the upstream).
Without a session id: 400; with an unknown one: 404.`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			h.do(post(s, pingBody))
			h.do(post(s, `{"jsonrpc":"2.0","id":"p-1","method":"ping","params":{}}`))
			h.do(post(nil, pingBody))
			h.do(post(unknownSession, pingBody))
			h.assertSent(1, "only initialize")
		},
	},
	{
		name: "call-json-answers",
		about: `tools/call answered by the upstream with JSON: a result (200), a JSON-RPC error (200, relayed), and a bare 202 to a
request (502: the call would never be answered).`,
		run: func(h *harness) {
			h.up.On("tools/call", testenv.Result(callResult), testenv.RPCError(-32602, "Unknown tool: nope"), testenv.Accepted())
			s := h.initialize("2025-06-18")
			h.do(post(s, callBody(2)))
			h.do(post(s, callBody(3)))
			h.do(post(s, callBody(4)))
		},
	},
	{
		name: "call-upstream-failures",
		about: `tools/call while the upstream is unreachable (502), too slow (504), answers too large (502), refuses with HTTP 400 or
429 and a JSON-RPC body (relayed), fails with HTTP 500 (502). The session survives all of it.`,
		run: func(h *harness) {
			h.up.On("tools/call",
				testenv.Fail(upstream.ErrUnavailable),
				testenv.Fail(upstream.ErrTimeout),
				testenv.Fail(upstream.ErrTooLarge),
				testenv.HTTPStatus(400, -32602, "Invalid params"),
				testenv.HTTPStatus(429, -32000, "Rate limited"),
				testenv.HTTPStatus(500, -32603, "Internal error"),
				testenv.Result(callResult))
			s := h.initialize("2025-06-18")
			for id := 2; id <= 8; id++ {
				h.do(post(s, callBody(id)))
			}
		},
	},
	{
		name: "call-sse-2025-06-18",
		about: `tools/call answered by the upstream with SSE (2025-06-18): 200 text/event-stream, the request's notifications then
its response, each with a gateway event id <stream>_<seq>, then the end. A second call on the same keep-alive
connection is stream 2.`,
		run: func(h *harness) {
			h.up.On("tools/call", testenv.Stream(testenv.Progress(1), logMessage("half way"), testenv.Progress(2), testenv.Respond(callResult)))
			s := h.initialize("2025-06-18")
			c := h.dial()
			c.send(post(s, callBody(2))).head().body()
			c.send(post(s, callBody(3))).head().body()
		},
	},
	{
		name:  "call-sse-2025-11-25-priming",
		about: `tools/call answered with SSE on a 2025-11-25 session: a priming event (id <stream>_0, retry, empty data) first.`,
		run: func(h *harness) {
			h.up.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Respond(callResult)))
			s := h.initialize("2025-11-25")
			h.do(post(s, initializedNote))
			h.do(post(s, callBody(2)))
		},
	},
	{
		name: "whole-answer-resumable",
		about: `An SSE answer that finishes at once goes out whole (one body with a Content-Length, the same events); its
events stay resumable: a GET with the priming event's id replays them and the stream ends.`,
		run: func(h *harness) {
			h.up.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Respond(callResult)))
			s := h.initialize("2025-11-25")
			h.do(post(s, initializedNote))
			h.do(post(s, callBody(2)))
			h.do(resume(s, "1_0"))
			h.do(resume(s, "1_1"))
		},
	},
	{
		name:     "call-cancelled",
		streamed: true,
		about: `The client cancels a call whose answer streams (notifications/cancelled: 202, forwarded under the call's
upstream id). The upstream need not answer a cancelled request, and this one does not: the gateway closes the call's
upstream stream, so the client's stream ends without a response and the session's only stream place
(Config.MaxStreamsPerSession = 1) is free again: the next call is answered.`,
		cfg: func(c *gateway.Config) { c.MaxStreamsPerSession = 1 },
		run: func(h *harness) {
			never := testenv.NewGate("never released")
			h.up.On("tools/call", testenv.Stream(testenv.Notify("notifications/message", `{"level":"info","data":"working"}`),
				testenv.Pause(never)), testenv.Result(callResult))
			s := h.initialize("2025-06-18")
			a := h.open(post(s, callBody(2)))
			a.events(1)
			h.waitStreamsIdle()
			h.do(post(s, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"timeout"}}`))
			a.continued().body()
			h.do(post(s, callBody(3)))
		},
	},
	{
		name:     "server-request-on-post-stream",
		streamed: true,
		about: `The upstream asks the client something (elicitation/create) on the call's stream; the client POSTs its answer (202,
forwarded); then the call's response ends the stream.`,
		run: func(h *harness) {
			answered := testenv.NewGate("client answered")
			h.up.On("tools/call", testenv.Stream(
				testenv.Msg(`{"jsonrpc":"2.0","id":"srv-1","method":"elicitation/create","params":{"message":"Proceed?","requestedSchema":{"type":"object","properties":{}}}}`),
				testenv.Pause(answered),
				testenv.Respond(callResult)))
			s := h.initialize("2025-06-18")
			a := h.open(post(s, callBody(2)))
			a.events(1)
			h.do(post(s, `{"jsonrpc":"2.0","id":"srv-1","result":{"action":"accept","content":{}}}`))
			h.release(answered, "the response")
			a.continued().body()
		},
	},
	{
		name: "batches-2025-03-26",
		about: `Batches on a session that negotiated 2025-03-26: requests and notifications (200, the upstream's array);
notifications only (202); ping inside a batch is forwarded; initialize inside a batch: 400 -32600; an empty batch: 400.`,
		run: func(h *harness) {
			h.up.On("tools/list", testenv.Result(toolsResult)).On("ping", testenv.Result(`{}`))
			s := h.initialize("2025-03-26")
			h.do(post(s, `[{"jsonrpc":"2.0","id":2,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`))
			h.do(post(s, `[{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}]`))
			h.do(post(s, `[{"jsonrpc":"2.0","id":3,"method":"ping"},{"jsonrpc":"2.0","id":4,"method":"tools/list"}]`))
			h.do(post(s, `[{"jsonrpc":"2.0","id":5,"method":"tools/list"},`+initializeBody("2025-03-26")+`]`))
			h.do(post(s, `[]`))
		},
	},
	{
		name:  "batch-refused-2025-06-18",
		about: `A batch on a session that negotiated 2025-06-18: 400 -32600; nothing reaches the upstream.`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			h.do(post(s, `[{"jsonrpc":"2.0","id":2,"method":"tools/list"},{"jsonrpc":"2.0","method":"notifications/initialized"}]`))
			h.assertSent(1, "only initialize")
		},
	},
	{
		name:     "duplicate-request-id-in-flight",
		streamed: true,
		about: `A request whose id is already in flight in the session: 400 -32600 (not forwarded). Once the first call is
answered the id may be used again.`,
		run: func(h *harness) {
			first := testenv.NewGate("first call answered")
			h.up.On("tools/call", testenv.Result(callResult).After(first))
			s := h.initialize("2025-06-18")
			a := h.dial().send(post(s, callBody(2)))
			first.WaitReached(h.t)
			h.do(post(s, callBody(2)))
			h.assertSent(2, "the duplicate is not forwarded")
			h.release(first, "the first call's answer")
			a.head().body()
			h.do(post(s, callBody(2)))
		},
	},
	// ---- request validation ----
	{
		name:  "other-methods",
		about: `Methods other than POST, GET and DELETE: 405 (the README promises Allow: GET, POST, DELETE).`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			for _, m := range []string{"PUT", "PATCH", "HEAD"} {
				h.do(sessionHeaders(request{method: m, target: "/mcp", headers: []header{{"Host", "localhost"}}}, s))
			}
			h.do(request{method: "OPTIONS", target: "/mcp", headers: []header{
				{"Host", "localhost"}, {"Origin", "http://localhost:5173"},
				{"Access-Control-Request-Method", "POST"}, {"Access-Control-Request-Headers", "content-type, mcp-session-id"},
			}})
		},
	},
	{
		name:  "content-type",
		about: `Content-Type not application/json (or missing): 415 -32000. Parameters and case do not matter.`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			h.do(post(s, pingBody).with("Content-Type", "text/plain"))
			h.do(post(s, pingBody).without("Content-Type"))
			h.do(post(s, pingBody).with("Content-Type", "application/json-seq"))
			h.do(post(s, pingBody).with("Content-Type", "application/json; charset=utf-8"))
			h.do(post(s, pingBody).with("Content-Type", "Application/JSON"))
		},
	},
	{
		name: "accept",
		about: `POST Accept not covering application/json and text/event-stream: 406 -32000 (missing, only one of them);
*/* and application/*, text/* cover both.`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			h.do(post(s, pingBody).without("Accept"))
			h.do(post(s, pingBody).with("Accept", "application/json"))
			h.do(post(s, pingBody).with("Accept", "text/event-stream"))
			h.do(post(s, pingBody).with("Accept", "*/*"))
			h.do(post(s, pingBody).with("Accept", "application/*, text/*"))
			h.do(post(s, pingBody).with("Accept", "text/event-stream;q=0.5, application/json;q=0.9"))
		},
	},
	{
		name: "body-errors",
		about: `Empty body: 400 -32000; invalid JSON: 400 -32700; not a JSON-RPC message: 400 -32600. Nothing reaches the
upstream.`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			for _, b := range []string{
				"",
				"  \n",
				`{"jsonrpc":`,
				`"just a string"`,
				`{"hello":"world"}`,
				`{"jsonrpc":"1.0","id":3,"method":"tools/list"}`,
				`{"jsonrpc":"2.0","id":{"x":1},"method":"tools/list"}`,
				`{"jsonrpc":"2.0","id":4}`,
			} {
				h.do(post(s, b))
			}
			h.assertSent(1, "only initialize")
		},
	},
	{
		name:  "body-over-limit",
		about: `A body over Config.MaxBodyBytes (here 256): 413 -32000, with or without a session; nothing reaches the upstream.`,
		cfg:   func(c *gateway.Config) { c.MaxBodyBytes = 256 },
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			big := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow","arguments":{"text":"` + strings.Repeat("x", 200) + `"}}}`
			h.do(post(s, big))
			h.do(post(nil, big))
			h.assertSent(1, "only initialize")
		},
	},
	{
		name:  "last-event-id-on-post",
		about: `Last-Event-ID on a POST: 400 -32000 (resuming is done by GET); nothing reaches the upstream.`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			h.do(post(s, callBody(2)).with("Last-Event-ID", "1_1"))
			h.assertSent(1, "only initialize")
		},
	},
	{
		name: "session-id-refusals",
		about: `A non-initialize POST without Mcp-Session-Id: 400 -32000; a malformed one (a space; 129 bytes): 400 -32000; an
unknown one: 404 -32001 with id null.`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			h.do(post(nil, toolsListBody))
			h.do(post(nil, initializedNote))
			h.do(post(s, toolsListBody).with("Mcp-Session-Id", "has space"))
			h.do(post(s, toolsListBody).with("Mcp-Session-Id", strings.Repeat("a", 129)))
			h.do(post(unknownSession, toolsListBody))
			h.assertSent(1, "only initialize")
		},
	},
	{
		name: "protocol-version-header",
		about: `An unsupported MCP-Protocol-Version on POST, GET and DELETE: 400 -32022 with data.supported and data.requested.
Missing: the negotiated version is used. A supported version other than the negotiated one is accepted.`,
		run: func(h *harness) {
			h.up.On("tools/list", testenv.Result(toolsResult))
			s := h.initialize("2025-06-18")
			h.do(post(s, toolsListBody).with("MCP-Protocol-Version", "2099-01-01"))
			h.do(post(s, toolsListBody).with("MCP-Protocol-Version", "2024-11-05"))
			h.do(get(s).with("MCP-Protocol-Version", "2099-01-01"))
			h.do(del(s).with("MCP-Protocol-Version", "2099-01-01"))
			h.assertSent(1, "only initialize")
			h.do(post(s, toolsListBody).without("MCP-Protocol-Version"))
			h.do(post(s, toolsListBody).with("MCP-Protocol-Version", "2025-11-25"))
		},
	},
	{
		name: "origin-and-host",
		about: `An allowed Origin (loopback by default on a loopback listener) passes; another Origin, or "null": 403 -32000, on
every method and before the method check. A Host that is not a loopback name: 403.`,
		run: func(h *harness) {
			h.do(post(nil, initializeBody("2025-06-18")).with("Origin", "http://localhost:5173"))
			h.do(post(nil, initializeBody("2025-06-18")).with("Origin", "https://evil.example"))
			h.do(post(nil, initializeBody("2025-06-18")).with("Origin", "null"))
			h.do(post(nil, initializeBody("2025-06-18")).with("Host", "evil.example"))
			h.do(post(nil, initializeBody("2025-06-18")).with("Host", "evil.example").with("Origin", "http://localhost"))
			s := h.initialize("2025-06-18")
			h.do(get(s).with("Origin", "https://evil.example"))
			h.do(del(s).with("Origin", "https://evil.example"))
			h.do(request{method: "PUT", target: "/mcp", headers: []header{{"Host", "localhost"}, {"Origin", "https://evil.example"}}})
			h.do(post(s, pingBody).with("Host", "127.0.0.1:9"))
			h.assertSent(2, "the two accepted initializes")
		},
	},
	{
		name: "auth",
		about: `With authentication on: no token, or a scheme other than Bearer, 401 with the challenge naming the protected
resource metadata (RFC 9728), served on the listener; an unknown token 401 invalid_token. alice opens a session and uses
it; bob's valid token on alice's session gets 404 as for an unknown session, on POST, GET, GET with Last-Event-ID and
DELETE, and the session lives on. The client's token never reaches the upstream (the gateway sends none).`,
		cfg: func(c *gateway.Config) {
			c.Authenticator = tokenTable{"alice-token-0123456789": "alice", "bob-token-0123456789": "bob"}
			c.AuthorizationServers = []string{"https://auth.example"}
		},
		run: func(h *harness) {
			alice := func(r request) request { return r.with("Authorization", "Bearer alice-token-0123456789") }
			bob := func(r request) request { return r.with("Authorization", "Bearer bob-token-0123456789") }
			h.do(post(nil, initializeBody("2025-06-18")))
			h.do(post(nil, initializeBody("2025-06-18")).with("Authorization", "Basic YWxpY2U6eA=="))
			h.do(post(nil, initializeBody("2025-06-18")).with("Authorization", "Bearer mallory-token-0123456789"))
			h.do(request{method: "GET", target: "/.well-known/oauth-protected-resource/mcp", headers: []header{{"Host", "localhost"}}})
			c := h.do(alice(post(nil, initializeBody("2025-06-18"))))
			require.Equal(h.t, 200, c.status)
			s := &session{id: c.header("Mcp-Session-Id"), version: "2025-06-18"}
			h.do(alice(post(s, initializedNote)))
			h.do(bob(post(s, pingBody)))
			h.do(bob(get(s)))
			h.do(bob(resume(s, "0_0")))
			h.do(bob(del(s)))
			h.do(alice(post(s, pingBody)))
			h.do(alice(del(s)))
		},
	},
	{
		name:  "unknown-path",
		about: `Requests for another path: 404 -32000 naming the endpoint. A query string does not change the path.`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			h.do(request{method: "POST", target: "/other", body: pingBody, headers: post(s, "").headers})
			h.do(request{method: "GET", target: "/mcp/", headers: get(s).headers})
			h.do(request{method: "POST", target: "/mcp?x=1", body: pingBody, headers: post(s, "").headers})
		},
	},
	// ---- caps ----
	{
		name:     "stream-cap",
		streamed: true,
		about: `Config.MaxStreamsPerSession = 1 and one call streaming: a second call answered with SSE gets 429 + Retry-After,
-32000, and so does a standalone GET; a call answered with JSON is not a stream and passes.`,
		cfg: func(c *gateway.Config) { c.MaxStreamsPerSession = 1 },
		run: func(h *harness) {
			rest := testenv.NewGate("first call goes on")
			h.up.On("tools/call",
				testenv.Stream(testenv.Progress(1), testenv.Pause(rest), testenv.Respond(callResult)),
				testenv.Stream(testenv.Respond(callResult)))
			h.up.On("tools/list", testenv.Result(toolsResult))
			s := h.initialize("2025-06-18")
			a := h.open(post(s, callBody(2)))
			a.events(1)
			h.do(post(s, callBody(3)))
			h.do(get(s))
			h.do(post(s, toolsListBody))
			h.release(rest, "the first call's response")
			a.continued().body()
		},
	},
	{
		name:  "session-cap",
		about: `Config.MaxSessions = 1: a second initialize gets 503 + Retry-After, -32000, without reaching the upstream; after a DELETE there is room.`,
		cfg:   func(c *gateway.Config) { c.MaxSessions = 1 },
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			h.do(post(nil, initializeBody("2025-06-18")))
			h.assertSent(1, "the refused initialize is not forwarded")
			h.do(del(s))
			h.initialize("2025-06-18")
		},
	},
	// ---- DELETE ----
	{
		name: "delete",
		about: `DELETE without a session id: 400; unknown: 404; a live session: 204 and the upstream session is closed; the id then
answers 404 to DELETE, POST and GET.`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			h.do(del(nil))
			h.do(del(unknownSession))
			h.do(del(s))
			require.True(h.t, h.up.Session(1).Closed(), "DELETE closes the upstream session before answering")
			h.do(del(s))
			h.do(post(s, toolsListBody))
			h.do(get(s))
		},
	},
	// ---- upstream trouble ----
	{
		name:     "upstream-session-gone",
		streamed: true,
		about: `The upstream answers 404 (it lost the session) while a call is streaming: the client gets 404 -32001 and the
session ends; the streaming call's stream ends; later requests get 404. The upstream session is not closed (it is gone).`,
		run: func(h *harness) {
			never := testenv.NewGate("never released")
			h.up.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Pause(never), testenv.Respond(callResult)))
			h.up.On("tools/list", testenv.Fail(upstream.ErrSessionGone))
			s := h.initialize("2025-06-18")
			a := h.open(post(s, callBody(2)))
			a.events(1)
			h.do(post(s, toolsListBody))
			h.waitSessionClosed(s, "upstream_gone")
			a.continued().body()
			h.do(post(s, toolsListBody))
			h.do(get(s))
			h.do(del(s))
			assert.False(h.t, h.up.Session(1).Closed(), "a session the upstream lost is not closed upstream")
		},
	},
	// ---- GET ----
	{
		name: "standalone-stream",
		about: `GET: 200 SSE, ": ok" at once, then the upstream's unrelated messages (stream 0). A second GET while one is
connected takes the stream over: the first connection ends; the new one (no Last-Event-ID) gets what the first was
given again, then the new messages. DELETE ends the session: the stream ends; the id answers 404.`,
		run: func(h *harness) {
			h.up.On("tools/list", testenv.Result(toolsResult))
			s := h.initialize("2025-06-18")
			a := h.open(get(s))
			a.events(1)
			h.waitListen(1)
			h.push(1, `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`)
			h.push(1, `{"jsonrpc":"2.0","id":"srv-1","method":"roots/list"}`)
			a.continued().events(2)
			b := h.open(get(s))
			b.events(1)
			a.continued().body()
			h.push(1, `{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}`)
			b.continued().events(3) // without Last-Event-ID: A's two events again, then the new one
			h.do(post(s, toolsListBody))
			h.do(del(s))
			b.continued().body()
			b.expectClosed()
			h.do(get(s))
		},
	},
	{
		name: "get-refusals",
		about: `GET without a session id: 400; Accept without text/event-stream: 406; unknown session: 404; malformed session id:
400. No standalone stream is opened upstream.`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			h.do(get(nil))
			h.do(get(s).with("Accept", "application/json"))
			h.do(get(s).without("Accept"))
			h.do(get(unknownSession))
			h.do(get(s).with("Mcp-Session-Id", "bad id"))
			h.assertSent(1, "only initialize")
		},
	},
	// ---- expiry (timed) and shutdown ----
	{
		name: "session-idle-expiry",
		about: `Config.SessionIdleTimeout = 50ms: an idle session ends (the upstream session is closed); its id then answers 404
to POST, GET and DELETE.`,
		cfg: func(c *gateway.Config) {
			c.SessionIdleTimeout = 50 * time.Millisecond
			c.SweepInterval = 5 * time.Millisecond
		},
		timed: true,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			h.waitSessionClosed(s, "idle")
			h.waitUpstreamClosed(1) // the reaper ends it, off the sweeper
			h.do(post(s, toolsListBody))
			h.do(get(s))
			h.do(del(s))
			// The upstream side of an expired session is ended by a reaper,
			// after the session: wait for it before the row shuts down.
			h.up.WaitFor(h.t, "the upstream session closed", func(v *testenv.FakeView) bool { return v.Count("close") >= 1 })
		},
	},
	{
		name: "session-max-age",
		about: `Config.SessionMaxAge = 500ms ends a session even with a connected stream: the stream ends, the upstream session
is closed, the id answers 404.`,
		cfg: func(c *gateway.Config) {
			c.SessionMaxAge = 500 * time.Millisecond
			c.SweepInterval = 5 * time.Millisecond
		},
		timed: true,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			a := h.open(get(s))
			a.events(1)
			h.waitListen(1)
			h.waitSessionClosed(s, "max_age")
			h.waitUpstreamClosed(1)
			a.continued().body()
			h.do(post(s, pingBody))
			// The upstream side of an expired session is ended by a reaper,
			// after the session: wait for it before the row shuts down.
			h.up.WaitFor(h.t, "the upstream session closed", func(v *testenv.FakeView) bool { return v.Count("close") >= 1 })
		},
	},
	{
		name:     "shutdown",
		streamed: true,
		about: `Shutdown with a standalone stream, a streaming call, a slow JSON call and a request being received: attached
streams end with a retry hint; the request that arrives now gets 503 (the README promises Retry-After); the slow call
still gets its answer; then every session is closed upstream.`,
		run: func(h *harness) {
			never := testenv.NewGate("never released")
			slow := testenv.NewGate("slow answer")
			h.up.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Pause(never), testenv.Respond(callResult)))
			h.up.On("tools/list", testenv.Result(toolsResult).After(slow))
			s := h.initialize("2025-06-18")
			a := h.open(get(s))
			a.events(1)
			h.waitListen(1)
			b := h.open(post(s, callBody(2)))
			b.events(1)
			c := h.dial().send(post(s, toolsListBody))
			slow.WaitReached(h.t)
			d := h.dial()
			late := post(s, pingBody).with("Expect", "100-continue")
			d.sendHead(late)
			d.head()

			h.note("the gateway starts shutting down")
			h.shutdown = true
			h.up.SetPhase("during gateway shutdown")
			ctx, cancel := context.WithTimeout(context.Background(), ioLimit)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- h.srv.Shutdown(ctx) }()
			a.continued().body()
			b.continued().body()
			// Serve returns once the listener is closed; from then until
			// Shutdown returns, fasthttp marks answers Connection: close.
			require.NoError(h.t, <-h.served)
			h.note("the gateway stopped accepting connections")
			h.note("the client sends the rest of its request")
			d.sendBody(late)
			d.head().body()
			h.release(slow, "the slow tools/list answer")
			c.head().body()
			require.NoError(h.t, <-done)
		},
	},
}

// tokenTable is an Authenticator of fixed tokens (static tokens without a
// file).
type tokenTable map[string]string

func (tt tokenTable) Authenticate(token []byte) (auth.Identity, error) {
	if p, ok := tt[string(token)]; ok {
		return auth.Identity{Principal: p, AllScopes: true}, nil
	}
	return auth.Identity{}, &auth.TokenError{Reason: "unknown token"}
}
