package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
	"github.com/mcpgate/mcpgate/shard"
)

// Defaults for Config zero values.
const (
	DefaultPath                 = "/mcp"
	DefaultShards               = shard.DefaultShards
	DefaultMaxSessions          = 100_000
	DefaultSessionIdleTimeout   = 30 * time.Minute
	DefaultSessionMaxAge        = 24 * time.Hour
	DefaultMaxStreamsPerSession = 10
	DefaultRingSize             = ringbuf.DefaultCapacity
	DefaultRingBytes            = ringbuf.DefaultMaxBytes
	DefaultHeartbeat            = 15 * time.Second
	DefaultMaxBodyBytes         = 4 << 20
	DefaultStreamRetention      = 5 * time.Minute
	DefaultWholeAnswerWindow    = 50 * time.Millisecond
	DefaultUpstreamTimeout      = upstream.DefaultTimeout
	DefaultRetryHint            = time.Second
	DefaultSweepInterval        = time.Second
	DefaultWriteStallTimeout    = 10 * time.Second
	DefaultStreamSendBuffer     = 64 << 10
	DefaultDrainWindow          = 10 * time.Second
	DefaultReadHeaderTimeout    = 10 * time.Second
	DefaultReadBodyTimeout      = 30 * time.Second
	DefaultMaxHeaderBytes       = 8 << 10
	DefaultMaxHeaders           = 64
	DefaultAuthFailureBurst     = 20
	DefaultAuthFailureRate      = 1.0
	// MaxSessionIDLen bounds the Mcp-Session-Id header a client may send.
	MaxSessionIDLen = 128
)

// Supported protocol versions, oldest first. The last is the latest.
var supportedVersions = []string{"2025-03-26", "2025-06-18", "2025-11-25"}

// SupportedVersions returns the protocol versions the gateway serves.
func SupportedVersions() []string { return append([]string(nil), supportedVersions...) }

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// Upstream opens upstream sessions. Required.
	Upstream upstream.Transport
	// Path of the MCP endpoint; "" = DefaultPath.
	Path string
	// Shards is the number of session shards, rounded up to a power of two;
	// 0 = DefaultShards.
	Shards int
	// MaxSessions caps live sessions; beyond it initialize gets 503 with
	// Retry-After. 0 = DefaultMaxSessions; <0 is an error.
	MaxSessions int
	// SessionIdleTimeout expires sessions without requests, calls or
	// connected streams for this long; 0 = DefaultSessionIdleTimeout.
	SessionIdleTimeout time.Duration
	// SessionMaxAge ends sessions this long after creation;
	// 0 = DefaultSessionMaxAge, <0 = no limit.
	SessionMaxAge time.Duration
	// MaxStreamsPerSession caps a session's open SSE streams (unfinished
	// POST answers and the standalone stream); beyond it a new stream gets
	// 429 with Retry-After. 0 = DefaultMaxStreamsPerSession.
	MaxStreamsPerSession int
	// RingSize is each stream's ring capacity in events (rounded up to a
	// power of two); 0 = DefaultRingSize.
	RingSize int
	// RingBytes is each stream's ring byte budget; 0 = DefaultRingBytes.
	RingBytes int
	// DropPolicy decides what a full ring does with droppable events.
	// The zero value is ringbuf.DropOldest.
	DropPolicy ringbuf.Policy
	// Heartbeat is the interval of SSE comment keep-alives on idle
	// streams; 0 = DefaultHeartbeat, <0 = none.
	Heartbeat time.Duration
	// StreamRetention keeps a finished POST answer stream resumable for
	// this long; 0 = DefaultStreamRetention.
	StreamRetention time.Duration
	// WholeAnswerWindow is how long a call's answer may be held so that a
	// short one goes out whole: an SSE answer that finishes within it is
	// sent as one body (wholeanswer.go), and a stdio or legacy HTTP+SSE
	// upstream's response that comes first within it is sent as JSON
	// (earlyanswer.go). A longer answer is streamed after it, its priming
	// event that much late. 0 = DefaultWholeAnswerWindow; negative = always
	// stream at once.
	WholeAnswerWindow time.Duration
	// WriteStallTimeout cuts a client connection whose write has made no
	// progress for this long (the stream stays resumable): a stream's, or,
	// on the listener given to Serve, any answer's;
	// 0 = DefaultWriteStallTimeout.
	WriteStallTimeout time.Duration
	// StreamMaxConnection closes a stream's client connection after this
	// long, with a retry hint, so clients poll and resume (SSE polling of
	// 2025-11-25). It applies to standalone streams and to POST answers
	// of 2025-11-25 sessions (older clients cannot resume those before the
	// response). 0 = never.
	StreamMaxConnection time.Duration
	// RetryHint is the SSE retry field (reconnect delay) sent on streams of
	// 2025-11-25 sessions and when the gateway closes streams on shutdown;
	// 0 = DefaultRetryHint.
	RetryHint time.Duration
	// AllowedOrigins lists Origin values (scheme://host[:port]) accepted
	// when a request carries Origin. Entries may omit the port to accept
	// any port, and "*" accepts any origin. nil = the loopback origins
	// (http(s)://localhost, 127.0.0.1, [::1], any port) when listening on a
	// loopback address, else origins whose host equals the request's Host.
	AllowedOrigins []string
	// AllowedHosts lists accepted Host header names (without port; "*"
	// accepts any). nil = loopback names when listening on a loopback
	// address, else any host.
	AllowedHosts []string
	// MaxBodyBytes bounds a POST body; larger ones get 413.
	// 0 = DefaultMaxBodyBytes.
	MaxBodyBytes int
	// UpstreamTimeout bounds each upstream POST until its answer starts;
	// 0 = DefaultUpstreamTimeout.
	UpstreamTimeout time.Duration
	// StreamSendBuffer sets the kernel send buffer (SO_SNDBUF) of every
	// client connection a stream is written on, so a client that stops
	// reading holds at most about this much in the kernel (Linux doubles
	// it) and then meets the ring's drop policy; without it the buffer
	// autotunes up to net.ipv4.tcp_wmem's maximum (4 MiB by default).
	// 0 = DefaultStreamSendBuffer; <0 = leave it to the kernel.
	StreamSendBuffer int
	// SweepInterval is how often the sessions with streams of every shard
	// are swept (heartbeats, stalled writes, retention; a quarter heartbeat
	// if that is shorter); every session's expiry is checked on one sweep
	// in fullSweepEvery. 0 = DefaultSweepInterval.
	SweepInterval time.Duration
	// AdminToken is the bearer token the admin API (AdminHandler) requires;
	// "" = the API refuses every request.
	AdminToken string
	// DrainWindow spreads the ends of the attached stream connections over
	// this long when Shutdown begins, so clients do not all reconnect at
	// once; 0 = DefaultDrainWindow, <0 = end them all at once. With
	// StateFile their retry hint is the window plus RetryHint, so they come
	// back after the restart at the drain's pace (drain.go).
	DrainWindow time.Duration
	// UpstreamEra says which eras the upstream serves: UpstreamEraAuto
	// (the zero value) asks it with server/discover; a client era it serves
	// is passed through, the other bridged. UpstreamEraStateless requires a
	// Transport implementing upstream.Stateless.
	UpstreamEra UpstreamEra
	// AdvertiseStateless offers the stateless revision (2026-07-28) to
	// clients in server/discover even when the upstream speaks only the
	// session era: stateless clients are then bridged onto pooled upstream
	// sessions, and clients able to fall back to initialize (the official
	// SDKs) choose the revision too, losing resumption. false (default)
	// offers only the session era over such an upstream; stateless requests
	// are served either way.
	AdvertiseStateless bool
	// Logger receives operational logs; nil = slog.Default().
	Logger *slog.Logger
	// Hooks observes sessions and streams; nil = none.
	Hooks Hooks
	// LegacySSEPath is the SSE endpoint of the legacy HTTP+SSE transport
	// (protocol 2024-11-05's, for clients that predate Streamable HTTP): a
	// GET there opens a session whose stream first names, in an endpoint
	// event, where the client POSTs its messages (legacysse.go).
	// "" = DefaultLegacySSEPath; see LegacySSEOff.
	LegacySSEPath string
	// LegacyMessagePath is where legacy HTTP+SSE clients POST their
	// messages (with ?sessionId=<id>); "" = DefaultLegacyMessagePath.
	LegacyMessagePath string
	// LegacySSEOff turns the legacy HTTP+SSE endpoints off: their paths
	// then get 404 like any unknown path. false (the zero value) = served.
	LegacySSEOff bool
	// StateFile, when set, makes sessions survive a restart (state.go): New
	// restores the sessions saved in this file (a file that is truncated,
	// corrupt or not a state file is refused whole, renamed to
	// <StateFile>.refused, and the gateway starts empty), and Shutdown
	// keeps the upstream sessions (no DELETE) and writes every session to
	// it atomically. Its directory must exist and be writable (New tries).
	// One gateway at a time: New locks <StateFile>.lock (flock, on Unix)
	// until Shutdown, and fails if another gateway holds it. "" = sessions
	// end at shutdown.
	StateFile string
	// Cluster, when set, makes the gateway one node of several sharing
	// sessions and streams through a scale-out backend (cluster.go;
	// package cluster on NATS JetStream). nil = a single node.
	Cluster Cluster

	// ReadHeaderTimeout bounds reading a request's head: from the
	// connection's opening for its first request, from the first byte for
	// later ones (the gap between requests is the idle timeout); beyond it
	// the client gets 408 and the connection is closed.
	// 0 = DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// ReadBodyTimeout bounds reading a request's body once its head is in;
	// beyond it 408. 0 = DefaultReadBodyTimeout.
	ReadBodyTimeout time.Duration
	// MaxHeaderBytes bounds a request's head (request line and header
	// fields); beyond it 431. It is also each connection's read buffer.
	// 0 = DefaultMaxHeaderBytes; below 1024 is an error.
	MaxHeaderBytes int
	// MaxHeaders bounds the header fields of a request; beyond it 431.
	// 0 = DefaultMaxHeaders.
	MaxHeaders int
	// MaxConnsPerIP caps the open connections from one client address (an
	// IPv6 client's /64) on the listener given to Serve; a connection
	// beyond it is answered 429 and closed. 0 = no cap; <0 is an error.
	MaxConnsPerIP int
	// Authenticator validates bearer tokens (see package gateway/auth);
	// nil = no authentication: every request is anonymous (principal "").
	// Sessions, session caps and rate limits are keyed by the principal it
	// returns alone, so it must keep the principals of different token
	// kinds apart (auth.Verifier names a JWT's "jwt:<sub>", which no static
	// token's can be).
	// With one, a request without a valid token gets 401 with
	// WWW-Authenticate naming the protected resource metadata, served at
	// /.well-known/oauth-protected-resource (RFC 9728).
	Authenticator Authenticator
	// RequiredScopes must all be granted to a token, else 403
	// (insufficient_scope). nil = none.
	RequiredScopes []string
	// AuthorizationServers are the issuer URLs of the authorization
	// servers that grant tokens for this resource, listed in the protected
	// resource metadata. nil = none listed.
	AuthorizationServers []string
	// ResourceURL is the endpoint's public URL: the resource of the
	// protected resource metadata, and where resource_metadata points.
	// "" = http://<Host><Path> of each request (https on a TLS connection).
	ResourceURL string
	// ForwardAuthorization hands the client's Authorization header to the
	// upstream transport with every message it forwards (see
	// upstream.WithCredential; the transport sends it only when built to
	// forward). The sessions pooled for stateless clients are then pooled
	// per credential as well as per principal: clients with different
	// headers never share one. false = the client's credentials never
	// leave the gateway.
	ForwardAuthorization bool
	// MaxSessionsPerPrincipal caps the live sessions of one principal (of
	// one client address for anonymous clients); beyond it initialize gets
	// 429 with Retry-After. 0 = no cap; <0 is an error.
	MaxSessionsPerPrincipal int
	// RateLimit is how many requests per second one principal (one client
	// address for anonymous clients) may make on the endpoint, on average;
	// beyond it 429 with Retry-After. 0 = no limit; <0 is an error.
	RateLimit float64
	// RateBurst is how many requests a principal may make at once before
	// RateLimit applies. 0 = RateLimit rounded up (at least 1).
	RateBurst int
	// AuthFailureBurst is how many failed authentications (401: no token
	// or an invalid one, on the endpoint or the admin API) one client
	// address (an IPv6 client's /64) may have in a row; past them, every
	// request from that address is refused with 429 and Retry-After before
	// its token is looked at, until AuthFailureRate has given one back.
	// Successes neither spend nor give back. 0 = DefaultAuthFailureBurst,
	// <0 = no limit.
	AuthFailureBurst int
	// AuthFailureRate is how many failed authentications per second come
	// back to an address's budget. 0 = DefaultAuthFailureRate; <0 is an
	// error.
	AuthFailureRate float64
	// EvictIdle makes room at the session cap (MaxSessions): the least
	// recently active session without a call in flight or a connected
	// stream is ended (CloseEvicted; its id then gets 404) instead of the
	// newcomer getting 503.
	EvictIdle bool
}

func (c *Config) setDefaults() error {
	if c.Upstream == nil {
		return errors.New("gateway: Config.Upstream is required")
	}
	if c.Path == "" {
		c.Path = DefaultPath
	}
	if err := servedPath("path", c.Path); err != nil {
		return err
	}
	type intField struct {
		name string
		v    *int
		def  int
	}
	for _, f := range []intField{
		{"shards", &c.Shards, DefaultShards},
		{"max sessions", &c.MaxSessions, DefaultMaxSessions},
		{"max streams per session", &c.MaxStreamsPerSession, DefaultMaxStreamsPerSession},
		{"ring size", &c.RingSize, DefaultRingSize},
		{"ring bytes", &c.RingBytes, DefaultRingBytes},
		{"max body bytes", &c.MaxBodyBytes, DefaultMaxBodyBytes},
		{"max header bytes", &c.MaxHeaderBytes, DefaultMaxHeaderBytes},
		{"max headers", &c.MaxHeaders, DefaultMaxHeaders},
	} {
		if *f.v < 0 {
			return fmt.Errorf("gateway: %s must not be negative", f.name)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	type durField struct {
		name       string
		v          *time.Duration
		def        time.Duration
		negativeOK bool
	}
	for _, f := range []durField{
		{"session idle timeout", &c.SessionIdleTimeout, DefaultSessionIdleTimeout, false},
		{"session max age", &c.SessionMaxAge, DefaultSessionMaxAge, true},
		{"heartbeat", &c.Heartbeat, DefaultHeartbeat, true},
		{"stream retention", &c.StreamRetention, DefaultStreamRetention, false},
		{"retry hint", &c.RetryHint, DefaultRetryHint, false},
		{"upstream timeout", &c.UpstreamTimeout, DefaultUpstreamTimeout, false},
		{"sweep interval", &c.SweepInterval, DefaultSweepInterval, false},
		{"write stall timeout", &c.WriteStallTimeout, DefaultWriteStallTimeout, false},
		{"drain window", &c.DrainWindow, DefaultDrainWindow, true},
		{"whole answer window", &c.WholeAnswerWindow, DefaultWholeAnswerWindow, true},
		{"read header timeout", &c.ReadHeaderTimeout, DefaultReadHeaderTimeout, false},
		{"read body timeout", &c.ReadBodyTimeout, DefaultReadBodyTimeout, false},
	} {
		if *f.v < 0 && !f.negativeOK {
			return fmt.Errorf("gateway: %s must not be negative", f.name)
		}
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.StreamMaxConnection < 0 {
		return errors.New("gateway: stream max connection must not be negative")
	}
	if c.StreamSendBuffer == 0 {
		c.StreamSendBuffer = DefaultStreamSendBuffer
	}
	if c.StateFile != "" {
		if fi, err := os.Stat(filepath.Dir(c.StateFile)); err != nil || !fi.IsDir() {
			return fmt.Errorf("gateway: state file %q: its directory does not exist", c.StateFile)
		}
		// Shutdown writes a temporary file there (state.go): found out
		// only then, every session would be lost with it.
		probe, err := os.CreateTemp(filepath.Dir(c.StateFile), "."+filepath.Base(c.StateFile)+".probe-*")
		if err != nil {
			return fmt.Errorf("gateway: state file %q: its directory is not writable: %w", c.StateFile, err)
		}
		_ = probe.Close()
		_ = os.Remove(probe.Name())
	}
	if _, ok := c.Upstream.(upstream.Stateless); c.UpstreamEra == UpstreamEraStateless && !ok {
		return errors.New("gateway: upstream era stateless needs an upstream that speaks the stateless revision (an http:// or https:// URL)")
	}
	if c.UpstreamEra > UpstreamEraStateless {
		return fmt.Errorf("gateway: unknown upstream era %d", c.UpstreamEra)
	}
	if err := c.legacyDefaults(); err != nil {
		return err
	}
	if err := c.securityDefaults(); err != nil {
		return err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Hooks == nil {
		c.Hooks = NopHooks{}
	}
	return nil
}

// servedPath checks a path the gateway serves: it starts with /, holds no
// query, fragment or space, and is in the form fasthttp gives a request's
// path (ctx.Path: percent escapes decoded, // collapsed, dot segments
// resolved), or no request would ever match it.
func servedPath(what, p string) error {
	switch {
	case !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# \t\r\n"):
		return fmt.Errorf("gateway: %s %q must start with / and hold no query", what, p)
	case strings.ContainsAny(p, "%\\") || strings.Contains(p, "//") || strings.Contains(p+"/", "/./") || strings.Contains(p+"/", "/../"):
		return fmt.Errorf("gateway: %s %q must be in normal form: no percent escapes, backslashes, // or dot segments (a request's path is matched decoded and normalized)", what, p)
	}
	return nil
}
