// Package gateway is mcpgate's MCP endpoint: it terminates client sessions
// over Streamable HTTP (protocol 2025-03-26, 2025-06-18 and 2025-11-25) on
// fasthttp and forwards them to an upstream MCP server. Legacy HTTP+SSE
// clients (protocol 2024-11-05's transport) get sessions of the same kind
// on their own two paths (legacysse.go); protocol versions are per hop
// (versions.go).
//
// The request paths read top to bottom in handlePost, handleGet and
// handleDelete. A session lives in one shard of a shard.Store; each of its
// SSE streams (stream.go) owns a ringbuf.Ring, and the client connection
// draining a stream is a clientConn (conn.go): a stream outlives its
// connections, and the newest connection of a stream replaces an older one.
// Producers (the pump goroutines that read upstream answers, and the POST
// handler itself for the part of an answer that arrived with its headers:
// relayBuffered) only push into rings, waiting for room when a ring is full
// of must-deliver events; each
// connection has exactly one writer, which drains as many whole events as
// fit into one write: for a POST answer, the fasthttp connection goroutine
// calling bodyWriter.Read (the connection stays reusable); for a GET
// stream, a Server-owned goroutine started on demand (hijackWriter) that
// writes on the connection taken over from fasthttp and exits when nothing
// is ready, so an idle connected stream holds no writer goroutine and no
// I/O buffers. Requests go upstream under gateway-assigned ids (calls.go).
//
// Concurrency contract:
//   - Server methods are safe for concurrent use. Serve may be called once;
//     Shutdown may be called at any time and more than once.
//   - The Server owns every goroutine it starts (the shard sweeper, one
//     pump per upstream answer stream still arriving after its headers, a
//     drainer per answer relayed by its handler whose end has not come, a reader per upstream standalone
//     stream while it has input (an idle one is parked
//     in the upstream transport's poller after standaloneIdle, a new one as
//     soon as its first input is read, and resumes on a new goroutine, see
//     pump.go), a writer per GET stream
//     while it has something to write, up to reapWorkers reapers while
//     expired or evicted sessions' upstream sides are being ended, the
//     rate limiters' sweeper when Config.RateLimit or Config.AuthFailureBurst
//     is set (the failed-authentication limit is on by default); on a cluster
//     node, cluster.go's activity writer, a follower and a watchdog per
//     stream read from another node, and a relay per forwarded streamed
//     answer) through Server.goOwned; Shutdown cancels them and waits. No
//     goroutine or timer exists per idle session.
//   - Config.Cluster (a scale-out backend) is called outside every gateway
//     lock; its Publish never waits, and its done functions only store an
//     atomic and kick a writer.
//   - Hooks run synchronously on the goroutine that caused the event, outside
//     every gateway lock; they must not block.
//   - Lock order (see LOCKING.md): session.mu, then stream.mu, then the
//     ring's internal lock. Shard internals are never held across calls.
//   - Restore runs before Serve only (New calls it with Config.StateFile);
//     SaveState may run at any time, and is exact once Shutdown has stopped
//     the owned goroutines (state.go). A restored session whose upstream
//     side is re-initialized does it on the goroutine of its first use
//     (reinit.go): no goroutine exists for it in between.
//   - AdminHandler is a net/http handler for a listener of its own (metrics,
//     health, profiles, the admin API and page); it is safe for concurrent
//     use and may serve after Shutdown (/readyz then reports draining).
//   - The Handler may be mounted in another fasthttp server; it then
//     accepts loopback Host names only unless Config.AllowedHosts says
//     otherwise (Serve picks the default for its listener's address).
//     Serve also wraps its listener (listener.go: the per-IP connection
//     cap, refusing bare LF line ends at once) and sets the read timeouts;
//     a server of another's gets only the Handler's own checks.
//
// Hostile clients: every request passes admit (requestcheck.go: framing,
// repeated single-value headers, Host and Origin) before it is routed, then
// authenticate (authn.go: failed authentications per address, bearer
// token, scopes, rate limit) before it
// reaches a session, and a session answers only the principal that created
// it (anyone else gets 404, as for an unknown session). See limits.go for
// sessions per principal and eviction at the cap.
package gateway
