package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/puzpuzpuz/xsync/v3"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
	"github.com/mcpgate/mcpgate/shard"
)

// noCopy makes go vet's copylocks check flag copies of the Server.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// Server is the MCP session gateway.
type Server struct {
	_ noCopy

	cfg   Config
	log   *slog.Logger
	store *shard.Store[*session]
	clock *shard.Clock
	http  *fasthttp.Server
	// origin is the Host/Origin policy: built by New for loopback defaults
	// (so a Handler mounted in another server is usable and safe), and
	// rebuilt by Serve for the listener's address.
	origin atomic.Pointer[originPolicy]

	// upstreamOK is when an upstream exchange last succeeded (coarse unix
	// ns); probeMu guards the readiness probe's cached result.
	upstreamOK atomic.Int64
	probeMu    sync.Mutex
	probeAt    int64
	probeErr   error

	// eras caches which era the upstream speaks (era.go); pool is the
	// session pool serving stateless clients over a session-era upstream.
	eras eraState
	pool upstream.Stateless

	// ephemeral holds the one-request sessions of stateless requests whose
	// answers stream (stateless.go): the sweeper keeps their streams up.
	ephemeral *xsync.MapOf[*session, struct{}]

	// stateLock holds Config.StateFile for this process, so that no other
	// gateway restores or overwrites it (statelock_unix.go); Shutdown
	// releases it once the file is written. nil without a state file.
	stateLock *os.File

	// resumer re-attaches upstream sessions of restored sessions; nil when
	// the transport cannot (state.go). restartHint is the retry hint (ms)
	// of connections ended by a restart's shutdown (Config.StateFile,
	// drain.go); 0 otherwise.
	resumer     upstream.Resumer
	restartHint atomic.Int64

	// reapq holds sessions whose upstream side waits to be ended by a
	// reaper (lifecycle.go); reapers counts the running ones.
	reapq   chan *session
	reapers atomic.Int32

	parsers sync.Pool // *jsonrpc.Parser

	metrics  metrics
	registry *prometheus.Registry

	// withStreams[i] holds the sessions of store shard i that have streams:
	// the sweeper's passes between full ones visit only these.
	withStreams []*xsync.MapOf[*session, struct{}]
	// sweepPass counts the sweeper's passes per shard; fullEvery-th ones
	// also check every session's expiry. Only the sweeper touches them.
	sweepPass []uint32
	fullEvery uint32
	// wheels[i] is shard i's expiry wheel (expiry.go); expiryCheck its
	// period: how often a shard's expiry is checked.
	wheels      []*expiryWheel
	expiryCheck time.Duration

	// ctx is the lifetime of owned goroutines; cancel stops them.
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	spawnMu sync.RWMutex // write-held while cancelling, see goOwned
	// streamsDone closes when shutdown begins: attached readers send a
	// retry hint and end.
	streamsDone chan struct{}
	shutting    atomic.Bool
	// draining is set when Shutdown begins (drain.go): no new sessions or
	// stream connections, not ready; cutDrain closes to end it early.
	draining     atomic.Bool
	cutDrain     chan struct{}
	cutOnce      sync.Once
	shutdownOnce sync.Once
	served       atomic.Bool
	// lnMu orders Serve's start against Shutdown's: it guards ln and the
	// setting of draining.
	lnMu sync.Mutex
	ln   net.Listener

	// clu is the node's cluster side (cluster.go); nil on a single node.
	clu *clusterNode

	// limits is the per-principal rate limit, nil without one; evict
	// keeps the candidates of Config.EvictIdle (limits.go). authFails
	// counts failed authentications per client address, nil when
	// Config.AuthFailureBurst is off; authRefusals logs its refusals.
	limits       *rateLimits
	evict        evictor
	authFails    *rateLimits
	authRefusals sparseLog
	// reapAborted and reapSkipped log the upstream closes past the
	// reaper's queue (lifecycle.go).
	reapAborted, reapSkipped sparseLog
}

// New validates cfg, fills in defaults and returns a Server. With
// Config.StateFile it restores the sessions saved there (see Restore). It
// starts the shard sweepers; Shutdown stops them.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	// Validate the ring settings once, so a bad flag fails at start.
	if _, err := ringbuf.New(ringbuf.Config{Capacity: cfg.RingSize, MaxBytes: cfg.RingBytes, Policy: cfg.DropPolicy}); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	storeCfg := shard.Config[*session]{
		Shards:     cfg.Shards,
		MaxEntries: cfg.MaxSessions,
	}
	if cfg.MaxSessionsPerPrincipal > 0 {
		storeCfg.OwnerLimit = cfg.MaxSessionsPerPrincipal
		storeCfg.OwnerOf = func(sess *session) string { return sess.owner }
	}
	store, err := shard.New(storeCfg)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:         cfg,
		log:         cfg.Logger,
		store:       store,
		clock:       shard.NewClock(0),
		ctx:         ctx,
		cancel:      cancel,
		streamsDone: make(chan struct{}),
		cutDrain:    make(chan struct{}),
		reapq:       make(chan *session, reapQueue),
	}
	s.authRefusals.every = authFailLogEvery
	s.reapAborted.every, s.reapSkipped.every = reapLogEvery, reapLogEvery
	s.setOrigin(true)
	s.ephemeral = xsync.NewMapOf[*session, struct{}]()
	s.withStreams = make([]*xsync.MapOf[*session, struct{}], store.NumShards())
	for i := range s.withStreams {
		s.withStreams[i] = xsync.NewMapOf[*session, struct{}]()
	}
	s.sweepPass = make([]uint32, store.NumShards())
	s.wheels = make([]*expiryWheel, store.NumShards())
	for i := range s.wheels {
		s.wheels[i] = newExpiryWheel()
	}
	s.expiryCheck = expiryCheckPeriod(cfg.SessionIdleTimeout, cfg.SessionMaxAge)
	s.parsers.New = func() any { return new(jsonrpc.Parser) }
	s.registry = s.newRegistry()
	s.http = &fasthttp.Server{
		Handler:                       s.Handler,
		ErrorHandler:                  s.handleTransportError,
		Name:                          "mcpgate",
		Concurrency:                   256 * 1024,
		ReadBufferSize:                cfg.MaxHeaderBytes, // also the largest request head (431 beyond)
		WriteBufferSize:               4 << 10,
		ReadTimeout:                   cfg.ReadHeaderTimeout, // until the head is in (408 beyond); see readBody
		HeaderReceived:                s.readBody,
		IdleTimeout:                   90 * time.Second,
		SecureErrorLogMessage:         true, // a refused request's bytes (tokens) never reach the log
		WriteTimeout:                  0,    // a nonzero value would cut streams
		MaxRequestBodySize:            cfg.MaxBodyBytes,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: false,
		CloseOnShutdown:               true,
		KeepHijackedConns:             true, // GET streams are written by the gateway's own writers
		StreamRequestBody:             false,
		ReduceMemoryUsage:             false,
		Logger:                        fasthttpLogger{s.log},
	}
	s.resumer, _ = cfg.Upstream.(upstream.Resumer)
	if cfg.StateFile != "" {
		if s.stateLock, err = lockStateFile(cfg.StateFile); err != nil {
			cancel()
			return nil, err
		}
		s.loadStateFile() // sessions of the previous run (state.go)
	}
	s.goOwned(s.sweepLoop)
	if cfg.RateLimit > 0 {
		s.limits = newRateLimits(cfg.RateLimit, cfg.RateBurst)
	}
	if cfg.AuthFailureBurst > 0 {
		s.authFails = newLimiters(cfg.AuthFailureRate, cfg.AuthFailureBurst)
	}
	if s.limits != nil || s.authFails != nil {
		s.goOwned(s.limiterSweepLoop)
	}
	if cfg.Cluster != nil {
		if err := s.clusterInit(); err != nil {
			_ = s.Shutdown(context.Background())
			return nil, fmt.Errorf("gateway: cluster: %w", err)
		}
	}
	return s, nil
}

// streamSet returns the set of sessions with streams that a session with
// this ID belongs to while it has streams.
func (s *Server) streamSet(id string) *xsync.MapOf[*session, struct{}] {
	return s.withStreams[s.store.ShardOf(id)]
}

// goOwned starts f as a goroutine owned by the Server: it gets the Server's
// context and Shutdown waits for it. It refuses (returns false) once the
// Server is shutting down.
func (s *Server) goOwned(f func(ctx context.Context)) bool {
	if !s.addOwned() {
		return false
	}
	go func() {
		defer s.wg.Done()
		f(s.ctx)
	}()
	return true
}

// addOwned counts one more owned goroutine, which must call s.wg.Done when
// it ends; false once the Server is shutting down. spawnMu orders every Add
// before Shutdown's Wait.
func (s *Server) addOwned() bool {
	s.spawnMu.RLock()
	defer s.spawnMu.RUnlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.wg.Add(1)
	return true
}

// setOrigin builds the Host/Origin policy for a listener that is (or is
// not) on a loopback address.
func (s *Server) setOrigin(loopback bool) {
	p := newOriginPolicy(s.cfg.AllowedOrigins, s.cfg.AllowedHosts, loopback)
	s.origin.Store(&p)
}

// Serve accepts connections on ln until Shutdown. It returns nil after a
// Shutdown, or the listener's error.
func (s *Server) Serve(ln net.Listener) error {
	if !s.served.CompareAndSwap(false, true) {
		return errors.New("gateway: Serve called twice")
	}
	s.lnMu.Lock()
	if s.draining.Load() { // Shutdown began before Serve: serve nothing
		s.lnMu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.ln = ln
	s.lnMu.Unlock()
	s.setOrigin(isLoopbackAddr(ln.Addr()))
	if s.cfg.Authenticator == nil && !isLoopbackAddr(ln.Addr()) {
		s.log.Warn("listening on a non-loopback address without authentication: anyone who can reach it can open sessions; configure bearer tokens or JWT validation", "addr", ln.Addr().String())
	}
	// Learn the upstream's era now rather than at the first request.
	s.goOwned(func(ctx context.Context) { s.Upstreams(ctx) })
	err := s.http.Serve(newGuardListener(ln, s))
	if s.shutting.Load() {
		return nil
	}
	return err
}

// Shutdown stops the gateway in order: drain (not ready, no new sessions,
// attached streams ended with a retry hint spread over Config.DrainWindow,
// see drain.go), stop accepting, end the remaining streams, let in-flight
// POSTs finish, end every session (and its upstream session), stop owned
// goroutines. With Config.StateFile the sessions are kept instead: their
// pumps stop, their upstream sessions are not ended, and once the owned
// goroutines have stopped they are written to the file (state.go; if that
// fails, their upstream sessions are ended after all). It
// returns ctx's error if ctx ends first; the remaining work is then cut
// short. CutDrain ends the drain early.
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.shutdownOnce.Do(func() {
		s.lnMu.Lock()
		s.draining.Store(true)
		s.lnMu.Unlock()
		s.clusterDrainStart(ctx) // a cluster node hands its sessions over (cluster.go)
		s.drainStreams(ctx)
		s.endListens() // cut short or no window: they still end with their response
		s.shutting.Store(true)
		close(s.streamsDone)
		s.wakeHijacked()
		s.lnMu.Lock()
		if s.ln != nil {
			// fasthttp closes the listeners its Serve registered; this one
			// may not be registered yet if Serve has only just begun.
			_ = s.ln.Close()
		}
		s.lnMu.Unlock()
		httpDone := make(chan error, 1)
		go func() { httpDone <- s.http.ShutdownWithContext(ctx) }()
		select {
		case e := <-httpDone:
			if e != nil && !errors.Is(e, context.Canceled) && !errors.Is(e, context.DeadlineExceeded) && !errors.Is(e, net.ErrClosed) {
				err = e
			}
		case <-ctx.Done():
			err = ctx.Err()
		}
		if s.cfg.StateFile != "" || s.clu != nil {
			// Kept for the restart (or the other nodes): pumps stop,
			// upstream sessions stay. Legacy HTTP+SSE sessions end with
			// their one stream, which the restart ends: they are closed
			// as without a state file.
			s.suspendSessions()
			s.closeSessions(ctx, func(sess *session) bool { return sess.legacy != nil })
		} else {
			s.closeSessions(ctx, func(*session) bool { return true })
		}
		s.drainReaps(ctx)
		s.spawnMu.Lock()
		s.cancel()
		s.spawnMu.Unlock()
		s.cancelSessions()
		waited := make(chan struct{})
		go func() { s.wg.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
		}
		s.clusterHandOverStreams(ctx) // answers still owed go to other nodes (cluster.go)
		if s.cfg.StateFile != "" {
			// Every pump has stopped (or ctx ended): the copy is exact.
			if e := s.writeStateFile(); e != nil {
				s.log.Error("sessions not saved: they are lost at this restart; their upstream sessions are ended", "err", e)
				if err == nil {
					err = e
				}
				// Nothing will re-attach the upstream sessions kept for
				// the restart: end them, as without a state file.
				s.closeSessions(ctx, func(*session) bool { return true })
			}
			_ = s.stateLock.Close() // another gateway may have it now
		}
		if c, ok := s.pool.(io.Closer); ok {
			_ = c.Close()
		}
		_ = s.cfg.Upstream.Close()
	})
	return err
}

// cancelSessions cancels every session's context, stored or ephemeral, so
// nothing a session runs outlives Shutdown (the ones ended or suspended
// before are cancelled already; cancelling again is a no-op).
func (s *Server) cancelSessions() {
	s.store.Range(func(_ string, sess *session) bool {
		sess.cancel()
		return true
	})
	s.ephemeral.Range(func(sess *session, _ struct{}) bool {
		sess.cancel()
		return true
	})
}

// closeSessions ends every session that which selects, a bounded number
// at a time.
func (s *Server) closeSessions(ctx context.Context, which func(*session) bool) {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	s.store.Range(func(id string, sess *session) bool {
		if ctx.Err() != nil {
			return false
		}
		if !which(sess) {
			return true
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			s.endSession(ctx, sess, CloseShutdown, upstreamNow)
		}()
		return true
	})
	wg.Wait()
}

// wakeHijacked kicks the writer of every attached GET stream, so each
// sees the shutdown and ends its connection with a retry hint. (Body
// writers on fasthttp's goroutines wait on streamsDone instead.)
func (s *Server) wakeHijacked() {
	var conns []*clientConn
	s.store.Range(func(_ string, sess *session) bool {
		conns = sess.appendConns(conns, nil)
		return true
	})
	for _, c := range conns {
		c.w.kick()
	}
}

// Metrics returns a snapshot of the gateway's counters.
func (s *Server) Metrics() MetricsSnapshot {
	return s.metrics.snapshot(s.store.Len())
}

// quietFor reports whether c has been quiet for a heartbeat interval at
// now. The coarse clock lags by up to one tick, so a tick (at most a
// quarter of the interval) counts as slack.
func (s *Server) quietFor(c *clientConn, now int64) bool {
	hb := int64(s.cfg.Heartbeat)
	if hb <= 0 {
		return false
	}
	slack := min(int64(s.clock.Tick()), hb/4)
	return now-c.lastWrite.Load() >= hb-slack
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	f.l.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
}
