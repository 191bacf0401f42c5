package gateway_test

import (
	"fmt"
	"time"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
)

// streamRows follow the README's "Streams, drop policies and resumption":
// event ids, replay, takeover, drops and coalescing, keep-alives, polling,
// and what upstream streams breaking does to client streams. Rows marked
// timed depend on configured durations (the behaviour under test is a
// timeout).
var streamRows = []row{
	// ---- the standalone stream ----
	{
		name:  "standalone-stream-2025-11-25",
		about: `GET on a 2025-11-25 session: ": ok" and a retry hint at once, then the upstream's messages.`,
		run: func(h *harness) {
			s := h.initialize("2025-11-25")
			a := h.open(get(s))
			a.events(2)
			h.waitListen(1)
			h.push(1, `{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///a"}}`)
			a.continued().events(1)
		},
	},
	{
		name: "standalone-resume-takes-over",
		about: `GET with Last-Event-ID 0_<n> while the first GET is still connected: the old connection is cut, the new one
gets the events after n, then live ones.`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			a := h.open(get(s))
			a.events(1)
			h.waitListen(1)
			for i := 1; i <= 3; i++ {
				h.push(1, fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"event %d"}}`, i))
			}
			a.continued().events(3)
			b := h.open(resume(s, "0_1"))
			b.events(2)
			a.continued().body()
			h.push(1, `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"event 4"}}`)
			b.continued().events(1)
		},
	},
	{
		name: "standalone-upstream-not-supported",
		about: `GET when the upstream offers no standalone stream: the client's stream still opens (": ok") and stays open;
a second GET takes it over (the first connection ends) and the upstream is not asked again.`,
		run: func(h *harness) {
			h.up.OnListen(upstream.ErrNotSupported)
			s := h.initialize("2025-06-18")
			a := h.open(get(s))
			a.events(1)
			h.waitListen(1)
			b := h.open(get(s))
			b.events(1)
			a.continued().body()
			h.assertSent(1, "initialize only: a listen is not a message")
		},
	},
	{
		name: "standalone-upstream-session-gone",
		about: `GET when the upstream's standalone stream answers 404 (session lost): the session ends, the client's stream
ends after ": ok", later requests get 404.`,
		run: func(h *harness) {
			h.up.OnListen(upstream.ErrSessionGone)
			s := h.initialize("2025-06-18")
			h.open(get(s)).body()
			h.waitSessionClosed(s, "upstream_gone")
			h.do(post(s, toolsListBody))
		},
	},
	{
		name: "standalone-upstream-reconnect",
		about: `The upstream's standalone stream breaks: the gateway reopens it (after a short backoff) and the client's stream
goes on without a gap.`,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			a := h.open(get(s))
			a.events(1)
			h.waitListen(1)
			h.push(1, `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`)
			a.continued().events(1)
			h.note("the upstream's standalone stream breaks")
			h.up.Session(1).CutListen(upstream.ErrUnavailable)
			h.waitListen(2)
			h.push(1, `{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}`)
			a.continued().events(1)
		},
	},
	// ---- resumption ----
	{
		name:     "post-stream-resume",
		streamed: true,
		about: `A POST answer stream (2025-06-18): the client drops the connection after 1_1; the upstream goes on; GET with
Last-Event-ID replays exactly the events after it and ends (the answer finished). 1_3 (the last) replays nothing;
1_0 replays everything.`,
		run: func(h *harness) {
			rest := testenv.NewGate("rest of the answer")
			h.up.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Pause(rest), testenv.Progress(2), testenv.Respond(callResult)))
			s := h.initialize("2025-06-18")
			a := h.open(post(s, callBody(2)))
			a.events(1)
			a.close()
			h.release(rest, "progress 2 and the response")
			h.waitStreamsIdle()
			h.open(resume(s, "1_1")).body()
			h.open(resume(s, "1_3")).body()
			h.open(resume(s, "1_0")).body()
		},
	},
	{
		name:     "post-stream-resume-live-2025-11-25",
		streamed: true,
		about: `A POST answer stream (2025-11-25): the client drops after the priming event and 1_1, resumes from 1_1 while the
call still runs: a retry hint, then the live rest of the answer.`,
		run: func(h *harness) {
			rest := testenv.NewGate("the response")
			h.up.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Pause(rest), testenv.Respond(callResult)))
			s := h.initialize("2025-11-25")
			a := h.open(post(s, callBody(2)))
			a.events(2)
			a.close()
			b := h.open(resume(s, "1_1"))
			b.events(1)
			h.release(rest, "the response")
			b.continued().body()
		},
	},
	{
		name: "resume-refusals",
		about: `GET Last-Event-ID that is malformed, names no stream of the session (another session's), or is ahead of the
stream: 400 -32000, never 404. An unknown session: 404.`,
		run: func(h *harness) {
			h.up.On("tools/call", testenv.Stream(testenv.Respond(callResult)))
			s1 := h.initialize("2025-06-18")
			s2 := h.initialize("2025-06-18")
			h.do(post(s1, callBody(2)))
			for _, id := range []string{"abc", "1-1", "01_1", "9_1", "1_5"} {
				h.do(resume(s1, id))
			}
			h.do(resume(s2, "1_1"))
			h.do(resume(unknownSession, "1_1"))
		},
	},
	{
		name:     "resume-evicted",
		streamed: true,
		about: `Config.RingSize = 4: the upstream sends six requests and the response one at a time, the client reads each;
delivered events are evicted as new ones arrive. Resuming from 1_1 needs evicted must-deliver events: 400 -32000
saying how many are gone (never a partial replay); from 1_3 all needed events are buffered.`,
		cfg: func(c *gateway.Config) { c.RingSize = 4 },
		run: func(h *harness) {
			var gates []*testenv.Gate
			var steps []testenv.Step
			for i := 1; i <= 7; i++ {
				g := testenv.NewGate(fmt.Sprintf("message %d", i))
				gates = append(gates, g)
				steps = append(steps, testenv.Pause(g))
				if i < 7 {
					steps = append(steps, testenv.Msg(fmt.Sprintf(`{"jsonrpc":"2.0","id":"srv-%d","method":"roots/list"}`, i)))
				} else {
					steps = append(steps, testenv.Respond(callResult))
				}
			}
			h.up.On("tools/call", testenv.Stream(steps...))
			s := h.initialize("2025-06-18")
			a := h.open(post(s, callBody(2)))
			for i, g := range gates {
				h.release(g, fmt.Sprintf("message %d", i+1))
				if i < len(gates)-1 {
					a.continued().events(1)
				}
			}
			a.continued().body()
			h.do(resume(s, "1_1"))
			h.do(resume(s, "1_3"))
		},
	},
	// ---- an upstream answer stream breaking ----
	{
		name: "upstream-stream-cut",
		about: `The upstream's answer stream breaks (an error) or ends (EOF) before the response: the client gets a -32603 error
for the call on the stream, then the end of the stream. The session survives.`,
		run: func(h *harness) {
			h.up.On("tools/call",
				testenv.Stream(testenv.Progress(1), testenv.Cut(upstream.ErrUnavailable)),
				testenv.Stream(testenv.Progress(1)),
				testenv.Result(callResult))
			s := h.initialize("2025-06-18")
			h.do(post(s, callBody(2)))
			h.do(post(s, callBody(3)))
			h.do(post(s, callBody(4)))
		},
	},
	// ---- timed: full rings, keep-alives, polling ----
	{
		name:     "resume-across-dropped-events",
		streamed: true,
		about: `2025-11-25 SSE polling (Config.StreamMaxConnection = 500ms) with Config.RingSize = 4: the gateway ends the
answer's connection after the priming event with a retry hint. With no reader, six droppable log messages and the
response overflow the ring: the oldest log messages are dropped. Resuming from 1_0 succeeds and skips the gap.`,
		cfg: func(c *gateway.Config) {
			c.RingSize = 4
			c.StreamMaxConnection = 500 * time.Millisecond
			c.SweepInterval = 10 * time.Millisecond
		},
		timed: true,
		run: func(h *harness) {
			burst := testenv.NewGate("burst")
			steps := []testenv.Step{testenv.Pause(burst)}
			for i := 1; i <= 6; i++ {
				steps = append(steps, logMessage(fmt.Sprintf("line %d", i)))
			}
			h.up.On("tools/call", testenv.Stream(append(steps, testenv.Respond(callResult))...))
			s := h.initialize("2025-11-25")
			h.open(post(s, callBody(2))).body()
			h.waitStreamClosed(s, 1, "finished", 1)
			h.release(burst, "six log messages and the response, while no client reads")
			h.waitStreamsIdle()
			h.open(resume(s, "1_0")).body()
		},
	},
	{
		name:     "ring-full-coalesce-drop-newest",
		streamed: true,
		about: `As resume-across-dropped-events, with Config.DropPolicy = drop-newest: while the ring (4 events) is full, a newer
progress notification replaces the undelivered one of its token in place, an incoming log message is refused (it gets
no id: no gap), and the response is stored past the soft limit. The resume replays what was kept.`,
		cfg: func(c *gateway.Config) {
			c.RingSize = 4
			c.DropPolicy = ringbuf.DropNewest
			c.StreamMaxConnection = 500 * time.Millisecond
			c.SweepInterval = 10 * time.Millisecond
		},
		timed: true,
		run: func(h *harness) {
			burst := testenv.NewGate("burst")
			h.up.On("tools/call", testenv.Stream(testenv.Pause(burst),
				logMessage("line 1"), logMessage("line 2"), logMessage("line 3"),
				testenv.Progress(1), testenv.Progress(2), testenv.Progress(3),
				logMessage("line 4"), testenv.Respond(callResult)))
			s := h.initialize("2025-11-25")
			h.open(post(s, callBody(2))).body()
			h.waitStreamClosed(s, 1, "finished", 1)
			h.release(burst, "three log messages, progress 1 to 3, a fourth log message and the response, while no client reads")
			h.waitStreamsIdle()
			h.open(resume(s, "1_0")).body()
		},
	},
	{
		name:     "heartbeat",
		streamed: true,
		about: `Config.Heartbeat = 100ms: quiet streams, the standalone GET and a POST answer waiting for its response, get an
SSE comment every heartbeat.`,
		cfg:   func(c *gateway.Config) { c.Heartbeat = 100 * time.Millisecond },
		timed: true,
		run: func(h *harness) {
			done := testenv.NewGate("the response")
			h.up.On("tools/call", testenv.Stream(testenv.Pause(done), testenv.Respond(callResult)))
			s := h.initialize("2025-06-18")
			a := h.open(get(s))
			a.events(1)
			h.waitListen(1)
			a.events(2)
			b := h.open(post(s, callBody(2)))
			b.events(2)
			h.release(done, "the response")
			b.continued().body()
		},
	},
	{
		name: "standalone-polling",
		about: `Config.StreamMaxConnection = 500ms on a standalone stream: after it the gateway ends the connection with a retry
hint. Messages arriving meanwhile wait in the ring; a plain GET (no Last-Event-ID) replays from where the previous
connection started: a client that received an event id would have resumed with Last-Event-ID instead.`,
		cfg: func(c *gateway.Config) {
			c.StreamMaxConnection = 500 * time.Millisecond
			c.SweepInterval = 10 * time.Millisecond
		},
		timed: true,
		run: func(h *harness) {
			s := h.initialize("2025-06-18")
			a := h.open(get(s))
			a.events(1)
			h.waitListen(1)
			h.push(1, `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`)
			a.continued().events(1)
			a.continued().body()
			h.waitStreamClosed(s, 0, "finished", 1)
			h.push(1, `{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}`)
			h.push(1, `{"jsonrpc":"2.0","method":"notifications/resources/list_changed"}`)
			h.waitStreamsIdle()
			h.open(get(s)).events(3)
		},
	},
}
