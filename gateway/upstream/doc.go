// Package upstream talks to the MCP servers behind the gateway.
//
// A Transport opens upstream sessions; a Session forwards client messages and
// opens the server's standalone message stream; a Stream yields the JSON-RPC
// messages of one answer or of the standalone stream. Each transport
// implements the same three interfaces, so the gateway never knows which
// wire the upstream speaks:
//
//   - HTTP: Streamable HTTP (2025-03-26 to 2025-11-25);
//   - Stdio: one child process per session, newline-delimited JSON-RPC on
//     its stdin and stdout;
//   - LegacySSE: the HTTP+SSE transport of 2024-11-05 (a GET stream whose
//     `endpoint` event names where to POST).
//
// A restarted gateway re-attaches the upstream sessions of its saved client
// sessions through the optional Resumer interface (HTTP implements it: the
// same Mcp-Session-Id goes upstream again); sessions of the other
// transports die with the gateway and are re-initialized by it. Sessions
// name their transport with Kind (KindHTTP, KindStdio, KindLegacySSE).
//
// Concurrency: a Transport and its Sessions are safe for concurrent use. A
// Stream has one reader; its Close may be called from any goroutine, at any
// time and more than once, and interrupts a blocked Next. Session.Close and
// Transport.Close are idempotent. Stdio and LegacySSE sessions, which
// nothing but the gateway ends, also implement Aborter: Abort starts the
// end without waiting for it, and never blocks. Stdio and LegacySSE have a Stats method
// (their own counts, for the gateway's metrics), safe for concurrent use.
//
// The Streamable HTTP transport pools POST connections in a
// fasthttp.HostClient (bounded by Config.MaxConns, waiting up to
// Config.ConnWaitTimeout for a free connection, each POST bounded by
// Config.Timeout until its response headers arrive). A POST that answers with
// text/event-stream keeps its connection until the Stream is closed; such a
// Stream is Buffered (inhand.go): it tells what of it arrived with the
// headers, which NextBuffered reads without waiting on the socket. GET
// streams, idle for most of their life, each run on a connection of their own
// (getConn, bounded by Config.StreamMaxConns, the head exchange by
// Config.Timeout); their reader waits for readiness before it reads
// (sse.ReadWaiter) and holds no read buffer while it waits. A GET stream
// without TLS is a Parker: after its idle period Next returns ErrIdle, and
// Park hands the wait to the transport's poller (poller_linux.go: an epoll
// instance of its own, read by one goroutine), which starts the given
// function on a new goroutine when the socket has input or the stream is
// closed, so an idle stream holds no goroutine at all.
//
// Stdio and LegacySSE upstreams speak over one channel per session (a
// child's stdout, one SSE stream), so a demux routes what arrives there: a
// response to the call that waits for its id, progress to the call whose
// request carried its token, list_changed and resources/updated to the
// standalone stream, anything else to the newest call in flight or, with
// none, to the standalone stream; the server's ping is answered at once.
// demux.go states the rule and the buffering (bounded, with backpressure for
// messages that must not be dropped, and counted drops). Requests are
// answered by a Reply Stream that ends after the call's last response;
// notifications and responses are Accepted; a batch is written as separate
// messages.
//
// Goroutines: the HTTP transport owns its poller's goroutine, started at
// the first Park and stopped by Close (parked readers are then resumed; the
// goroutines Park starts belong to its caller). Stdio owns one spawner goroutine
// (locked to its OS thread for the transport's life, see spawner for why)
// and, per session, a supervisor (ends, notices the exit of and reaps the
// process), a stdout reader (feeds the demux), a stderr logger, and for a
// moment a writer per answer the transport sends itself (at most a few).
// LegacySSE owns, per session, the SSE stream's reader (which also
// reconnects) and the POSTs of the transport's own answers. Each session's
// goroutines end when it ends; Transport.Close ends every session and waits
// for all of them. Stdio's Session.Close returns once the child is reaped,
// or after StdinGrace at most: the supervisor then finishes the escalation
// (SIGTERM, SIGKILL after KillGrace) on its own, and Transport.Close waits
// for it.
package upstream
