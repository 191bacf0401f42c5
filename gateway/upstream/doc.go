// Package upstream talks to the MCP servers behind the gateway.
//
// A Transport opens upstream sessions; a Session forwards client messages and
// opens the server's standalone message stream; a Stream yields the JSON-RPC
// messages of one upstream SSE answer or standalone stream. Each transport
// (Streamable HTTP today; legacy HTTP+SSE, stdio and stateless 2026-07-28
// servers later) implements the same three interfaces, so the gateway never
// knows which wire the upstream speaks.
//
// Concurrency: a Transport and its Sessions are safe for concurrent use. A
// Stream has one reader; its Close may be called from any goroutine, at any
// time and more than once, and interrupts a Next blocked on the network.
//
// The Streamable HTTP transport pools POST connections in a
// fasthttp.HostClient (bounded by Config.MaxConns, waiting up to
// Config.ConnWaitTimeout for a free connection, each POST bounded by
// Config.Timeout until its response headers arrive). A POST that answers with
// text/event-stream keeps its connection until the Stream is closed. GET
// streams, idle for most of their life, each run on a connection of their own
// with a 1 KiB read buffer (getConn, bounded by Config.StreamMaxConns, the
// head exchange by Config.Timeout); their reader waits for readiness before
// it reads (sse.ReadWaiter), so an idle one parks with a minimal stack. The
// transport owns no goroutines.
package upstream
