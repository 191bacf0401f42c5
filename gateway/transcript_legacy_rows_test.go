package gateway_test

import (
	"regexp"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// legacyRows: the legacy HTTP+SSE transport's endpoints (GET /sse, POST
// /messages?sessionId=...), and the protocol versions of each hop.
var legacyRows = []row{
	{
		name: "legacy-sse-session",
		about: `A legacy HTTP+SSE client: GET /sse opens a session, its stream's first event names the message endpoint. Every
POST there gets 202 and its answer arrives on the stream as "event: message", under the client's id: initialize
(the session's version is the one initialize settles), a JSON answer, a streamed answer with its progress, a ping
answered by the gateway; the upstream's own messages follow on the same stream. The upstream loses the session:
the stream ends, the id answers 404.`,
		run: func(h *harness) {
			h.up.On("tools/list", testenv.Result(toolsResult))
			h.up.On("tools/call", testenv.Stream(testenv.Progress(1), logMessage("half way"), testenv.Respond(callResult)),
				testenv.Fail(upstream.ErrSessionGone))
			a, sid := h.legacyOpen()
			h.do(legacyPost(sid, initializeBody("2025-06-18")))
			a.continued().events(1)
			h.waitListen(1)
			h.do(legacyPost(sid, initializedNote))
			h.do(legacyPost(sid, toolsListBody))
			a.continued().events(1)
			h.do(legacyPost(sid, callBody(2)))
			a.continued().events(3)
			h.do(legacyPost(sid, pingBody))
			a.continued().events(1)
			h.push(1, `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`)
			a.continued().events(1)
			h.do(legacyPost(sid, callBody(3)))
			h.waitSessionClosed(&session{id: sid}, "upstream_gone")
			a.continued().body()
			h.do(legacyPost(sid, pingBody))
		},
	},
	{
		name:     "legacy-sse-call-cancelled",
		streamed: true,
		about: `A legacy client cancels a call whose answer streams (its notifications/cancelled: 202, forwarded under the
call's upstream id). The upstream does not answer the cancelled request: the gateway closes the call's upstream
stream (no response follows on the session's stream) and the next call is answered.`,
		run: func(h *harness) {
			never := testenv.NewGate("never released")
			h.up.On("tools/call", testenv.Stream(testenv.Notify("notifications/message", `{"level":"info","data":"working"}`),
				testenv.Pause(never)), testenv.Result(callResult))
			a, sid := h.legacyOpen()
			h.do(legacyPost(sid, initializeBody("2025-06-18")))
			a.continued().events(1)
			h.waitListen(1)
			h.do(legacyPost(sid, callBody(2)))
			a.continued().events(1)
			h.waitStreamsIdle()
			h.do(legacyPost(sid, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"timeout"}}`))
			h.up.WaitFor(h.t, "the cancelled call's upstream stream closed", func(v *testenv.FakeView) bool { return v.StreamsIdle() })
			h.do(legacyPost(sid, callBody(3)))
			a.continued().events(1)
		},
	},
	{
		name:     "legacy-sse-server-request",
		streamed: true,
		about: `The upstream asks the legacy client something (sampling) during a call: the request arrives on the session's
stream, the client POSTs its answer (202, forwarded upstream unchanged), then the call's response arrives.`,
		run: func(h *harness) {
			answered := testenv.NewGate("client answered")
			h.up.On("tools/call", testenv.Stream(
				testenv.Msg(`{"jsonrpc":"2.0","id":"srv-1","method":"sampling/createMessage","params":{"messages":[],"maxTokens":10}}`),
				testenv.Pause(answered),
				testenv.Respond(callResult)))
			a, sid := h.legacyOpen()
			h.do(legacyPost(sid, initializeBody("2025-06-18")))
			a.continued().events(1)
			h.waitListen(1)
			h.do(legacyPost(sid, callBody(2)))
			a.continued().events(1)
			h.do(legacyPost(sid, `{"jsonrpc":"2.0","id":"srv-1","result":{"role":"assistant","content":{"type":"text","text":"hi"},"model":"m"}}`))
			h.release(answered, "the response")
			a.continued().events(1)
		},
	},
	{
		name: "legacy-sse-refusals",
		about: `The legacy endpoints' refusals: a message without sessionId (400), with a malformed one (400), an unknown one
(404), not JSON (415); a second initialize (400); an empty body (400) and one that is not UTF-8 (400, -32700, as
on /mcp; nothing forwarded); POST on the SSE path and GET
on the message path (405); GET /sse with Accept not covering SSE (406) or a bad Origin (403). A legacy session is
reached only through the legacy endpoints (404 on /mcp), a Streamable HTTP session only through /mcp (404 on the
message path). Requests before initialize are answered on the stream (202): server/discover with -32601 (2026-07-28
clients probe with it, then initialize), a ping with {}, others with -32600.`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			a, sid := h.legacyOpen()
			h.do(legacyPost("", toolsListBody))
			h.do(legacyPost("bad%20id", toolsListBody))
			h.do(legacyPost(unknownSession.id, toolsListBody))
			h.do(legacyPost(sid, toolsListBody).with("Content-Type", "text/plain"))
			h.do(legacyPost(sid, toolsListBody))
			a.continued().events(1)
			h.do(legacyPost(sid, `{"jsonrpc":"2.0","id":"d","method":"server/discover","params":{}}`))
			a.continued().events(1)
			h.do(legacyPost(sid, pingBody))
			a.continued().events(1)
			h.do(legacyPost(sid, initializeBody("2025-06-18")))
			a.continued().events(1)
			h.waitListen(1)
			h.do(legacyPost(sid, initializeBody("2025-06-18")))
			h.do(legacyPost(sid, " \r\n"))
			h.do(legacyPost(sid, `{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"x":"`+"\xff\xfe"+`"}}`))
			h.do(request{method: "POST", target: "/sse", headers: []header{{"Host", "localhost"}, {"Content-Type", "application/json"}}, body: pingBody})
			h.do(request{method: "GET", target: "/messages?sessionId=" + sid, headers: []header{{"Host", "localhost"}}})
			h.do(legacyGet().with("Accept", "application/json"))
			h.do(legacyGet().with("Origin", "http://evil.example.com"))
			h.do(post(&session{id: sid, version: "2025-06-18"}, toolsListBody))
			h.do(legacyPost(s.id, toolsListBody))
			h.assertSent(2, "the two initializes only")
		},
	},
	{
		name: "legacy-sse-session-cap",
		about: `Config.MaxSessions = 1: a legacy session counts like any other: a second GET /sse and a Streamable HTTP
initialize get 503 with Retry-After.`,
		cfg: func(c *gateway.Config) { c.MaxSessions = 1 },
		run: func(h *harness) {
			h.legacyOpen()
			h.do(legacyGet())
			h.do(post(nil, initializeBody("2025-06-18")))
			h.assertSent(0, "nothing")
		},
	},
	{
		name: "legacy-sse-client-gone",
		about: `Config.Heartbeat = 50ms: the legacy client closes its stream; the gateway notices at a heartbeat's write and
ends the session (client_gone; there is no resuming a legacy stream) and its upstream session; the id answers 404.`,
		cfg:   func(c *gateway.Config) { c.Heartbeat = 50 * time.Millisecond },
		timed: true,
		run: func(h *harness) {
			a, sid := h.legacyOpen()
			h.do(legacyPost(sid, initializeBody("2025-06-18")))
			a.continued().events(1)
			h.waitListen(1)
			a.close()
			h.waitSessionClosed(&session{id: sid}, "client_gone")
			h.up.WaitFor(h.t, "the upstream session closed", func(v *testenv.FakeView) bool { return v.Count("close") >= 1 })
			h.do(legacyPost(sid, pingBody))
		},
	},
	{
		name: "legacy-sse-versions",
		about: `Versions per hop. A legacy client asking for 2024-11-05 of an upstream that serves it gets it. A legacy client
asking for 2025-11-25 of an upstream that only serves 2024-11-05 gets 2024-11-05 too (the legacy transport carries
it). A Streamable HTTP client in front of that upstream gets the version it asked for (2025-06-18), as the
InitializeResult's protocolVersion: the upstream's hop stays at 2024-11-05.`,
		run: func(h *harness) {
			h.up.Versions("2024-11-05", "2025-06-18")
			a, sid := h.legacyOpen()
			h.do(legacyPost(sid, initializeBody("2024-11-05")))
			a.continued().events(1)
			h.waitListen(1)
			h.up.Versions("2024-11-05")
			b, sid2 := h.legacyOpen()
			h.do(legacyPost(sid2, initializeBody("2025-11-25")))
			b.continued().events(1)
			h.waitListen(2)
			h.do(post(nil, initializeBody("2025-06-18")))
		},
	},
}

func legacyGet() request {
	return request{method: "GET", target: "/sse", headers: []header{{"Host", "localhost"}, {"Accept", "text/event-stream"}}}
}

func legacyPost(sid, body string) request {
	target := "/messages"
	if sid != "" {
		target += "?sessionId=" + sid
	}
	return request{method: "POST", target: target, body: body, headers: []header{{"Host", "localhost"}, {"Content-Type", "application/json"}}}
}

var endpointSessionID = regexp.MustCompile(`sessionId=([0-9a-f]+)`)

// legacyOpen opens a legacy session (GET /sse), learns its id from the
// endpoint event (so the transcript shows <session-N>) and records the
// event. It returns the stream's connection and the id.
func (h *harness) legacyOpen() (*conn, string) {
	h.t.Helper()
	c := h.open(legacyGet())
	require.Equal(h.t, 200, c.status, "GET /sse")
	for nthBlockEnd(c.pending, 1) < 0 {
		if !c.more() {
			h.t.Fatalf("the legacy stream ended before its endpoint event: %q", c.pending)
		}
	}
	m := endpointSessionID.FindSubmatch(c.pending)
	require.NotNil(h.t, m, "endpoint event: %q", c.pending)
	sid := string(m[1])
	h.sids = append(h.sids, sid)
	c.events(1)
	return c, sid
}
