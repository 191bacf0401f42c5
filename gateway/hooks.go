package gateway

// CloseReason says why a session or stream ended. Every value is counted.
type CloseReason uint8

const (
	// CloseClientDelete: the client sent DELETE.
	CloseClientDelete CloseReason = iota
	// CloseIdle: the session was idle longer than Config.SessionIdleTimeout.
	CloseIdle
	// CloseMaxAge: the session outlived Config.SessionMaxAge.
	CloseMaxAge
	// CloseUpstreamGone: the upstream answered 404: it lost the session.
	CloseUpstreamGone
	// CloseShutdown: the gateway is shutting down.
	CloseShutdown
	// CloseClientGone: the client's connection ended (streams, and legacy
	// HTTP+SSE sessions, which end with their stream).
	CloseClientGone
	// CloseSlowConsumer: the reader fell too far behind and was cut (streams
	// and legacy HTTP+SSE sessions).
	CloseSlowConsumer
	// CloseFinished: the stream delivered its response and ended (streams only).
	CloseFinished
	// CloseWriteStall: a write made no progress for too long (streams and
	// legacy HTTP+SSE sessions).
	CloseWriteStall
	// CloseProtocolError: the upstream broke the protocol or the exchange failed.
	CloseProtocolError
	// CloseReplaced: a newer connection of the client took the stream over
	// (streams only).
	CloseReplaced
	// CloseAdmin: an operator ended the session through the admin API.
	CloseAdmin
	// CloseElsewhere: another node of the cluster ended the session, or
	// claimed it from this node (this node drops its copy, or its
	// standalone stream).
	CloseElsewhere
	// CloseEvicted: the session was the least recently active idle one
	// when the session cap was reached, and made room (Config.EvictIdle).
	CloseEvicted
	numCloseReasons
)

var closeReasonNames = [numCloseReasons]string{
	"client_delete", "idle", "max_age", "upstream_gone", "shutdown",
	"client_gone", "slow_consumer", "finished", "write_stall", "protocol_error", "replaced", "admin", "ended_elsewhere", "evicted",
}

func (r CloseReason) String() string {
	if r < numCloseReasons {
		return closeReasonNames[r]
	}
	return "unknown"
}

// SessionInfo describes a session to hooks. It is a copy: hooks may keep it.
type SessionInfo struct {
	ID        string // the gateway-issued Mcp-Session-Id
	Version   string // negotiated protocol version ("" for a legacy HTTP+SSE session until its initialize)
	Principal string // authenticated principal (a JWT's is "jwt:" and its sub, see auth.Identity), "" when anonymous
}

// StreamInfo describes one SSE stream to hooks.
type StreamInfo struct {
	Session SessionInfo
	Stream  uint64 // 0 = standalone GET stream, n = the n-th POST answer
}

// Hooks lets library users observe sessions and streams. Methods are called
// synchronously, outside every gateway lock, after the event happened; they
// must return quickly and must not call back into the Server. Embed
// NopHooks to implement only some of them. With Config.StateFile, sessions
// restored by New are reported with SessionCreated, and the sessions a
// Shutdown keeps for the restart get no SessionClosed.
type Hooks interface {
	SessionCreated(SessionInfo)
	SessionClosed(SessionInfo, CloseReason)
	StreamOpened(StreamInfo)
	StreamClosed(StreamInfo, CloseReason)
}

// NopHooks implements Hooks with methods that do nothing.
type NopHooks struct{}

func (NopHooks) SessionCreated(SessionInfo)             {}
func (NopHooks) SessionClosed(SessionInfo, CloseReason) {}
func (NopHooks) StreamOpened(StreamInfo)                {}
func (NopHooks) StreamClosed(StreamInfo, CloseReason)   {}
