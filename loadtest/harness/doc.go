// Package harness drives load at an MCP endpoint and measures it honestly: open-loop
// schedules measured from the intended send time (no coordinated omission), delivery
// latency taken from the send time embedded in each event, HdrHistogram percentiles
// recorded per lane and merged, and exact counts of lost and duplicated events from
// per-stream sequence numbers. It is a black-box client: it speaks MCP over HTTP and
// imports nothing of the gateway but its SSE decoder and JSON-RPC reader.
//
// Run executes one scenario (post, stream, churn, resume, slow, soak; see Config) and
// returns a Result, which WriteSummary prints as a table, encoding/json writes for
// scripts, and WriteReport turns into Markdown with charts.
//
// The measured events come from the mock upstream (package mockup): each notification
// carries params._meta.seq and params._meta.sent, and the push tool reports the last
// sequence number a session's GET stream was offered, so losses at the tail are counted
// too.
//
// # Concurrency
//
// Run blocks until its scenario ends and owns every goroutine it starts: load workers
// (at most Config.Conns per open-loop schedule), one reader per GET stream, one caller
// per session in the resume scenario, the once-a-second sampler and, in soak, the
// metrics sampler. All of them end before Run returns: a GET stream the target does
// not end within Config.DrainTimeout of DELETE is cut by closing its connection (and
// noted in the result). Client is safe for concurrent use;
// an EventStream belongs to one goroutine. Recorder lanes lock per call, so any
// goroutine may record into any lane. SeqTracker is not safe for concurrent use.
package harness
