// Package mockup is a fast mock MCP server (the "upstream") for the load harness and for
// gateway tests.
//
// It speaks the session era of Streamable HTTP (protocol revisions 2025-03-26, 2025-06-18
// and 2025-11-25: initialize issues an Mcp-Session-Id, notifications get 202, requests get
// JSON or SSE answers, GET opens the session's standalone stream, DELETE ends the session
// with 204) and the stateless 2026-07-28 revision (no sessions, per-request _meta, the
// Mcp-Method and Mcp-Name headers). It serves four tools:
//
//   - echo: returns a text result of the requested size;
//   - stream: sends exactly count progress notifications (progress 1..count, total count)
//     at the requested rate on the POST's SSE answer, then the result;
//   - push: sets the rate of server-pushed notifications/message events on the session's
//     GET stream and returns the push sequence number reached so far;
//   - notify: sends one notifications/<kind>/list_changed (kind "tools", the default,
//     "prompts" or "resources") on the session's GET stream, numbered in the same
//     sequence as pushed events, and returns that sequence number.
//
// Every notification carries params._meta.seq (a per-stream sequence number starting at 1)
// and params._meta.sent (its creation time in unix nanoseconds), so a client can measure
// delivery latency and count lost and duplicated events. Config.InjectLossEvery and
// Config.InjectDupEvery drop or duplicate every Nth notification on purpose, so a test can
// prove that a client notices.
//
// Every SSE stream of a session (stream 0 is the GET stream, POST answers get 1, 2, ...)
// keeps its last Config.ReplayEvents events, so a client that lost its connection resumes
// with GET and Last-Event-ID "<stream>_<seq>". POST answer streams are lossless: their
// producer waits while the replay log is full of events no reader has taken. The GET
// stream is lossy: when its log is full the oldest event is evicted, and a reader that had
// not taken it skips it (counted as evicted_unread in the stats). A GET without
// Last-Event-ID starts with the events no reader has taken yet (those pushed while no
// stream was open), then goes live. A new GET or resume for a stream takes the stream
// over from a previous reader, which then ends.
//
// # Concurrency
//
// A Server is safe for concurrent use. Its handler runs on fasthttp's connection
// goroutines. The server owns one goroutine per running stream tool call and one per
// session whose push rate is nonzero, which stop when their session is deleted, and one
// per SSE answer waiting out Config.AnswerDelay, which stops when the delay is over; all
// of them stop when Shutdown is called, and Shutdown waits for them. Stream body readers never touch
// the fasthttp RequestCtx: they capture the stream, the session's done channel and the
// server's done channel in the handler. Snapshot may be called at any time.
//
// Lock order: a session's GET-stream mutex (getMu), then the session's mutex, then one
// of its streams' mutexes, never the reverse; no lock is held across I/O or any
// blocking wait (appends to the lossy GET stream never wait).
package mockup
