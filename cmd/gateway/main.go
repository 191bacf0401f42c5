// Command gateway runs mcpgate: an MCP session gateway in front of one
// upstream MCP server. Run `gateway -h` for the flags; every flag has an
// environment twin MCPGATE_<FLAG> (upper case, dashes as underscores) that
// the command line overrides.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/cluster"
	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the parsed flags.
type options struct {
	listen, path, upstreamURL    string
	shards, maxSessions          int
	idleTimeout, maxAge          time.Duration
	maxStreams, ringSize         int
	ringBytes, maxBody, sendBuf  byteSize
	dropPolicy                   string
	heartbeat, streamRetention   time.Duration
	wholeAnswerWindow            time.Duration
	retryHint                    time.Duration
	writeStall, maxConnection    time.Duration
	adminListen, adminTokenFile  string
	stateFile                    string
	drainWindow                  time.Duration
	allowedOrigins, allowedHosts string
	upstreamMaxConns             int
	upstreamTimeout              time.Duration
	upstreamCA                   string
	shutdownTimeout              time.Duration
	logLevel, logFormat          string
	upstreamOptions              // stdio and legacy HTTP+SSE upstreams (upstream.go)
	eraOptions                   // the protocol eras (eras.go)
	clusterOptions               // scale-out on NATS JetStream (cluster.go)
	legacyOptions                // legacy HTTP+SSE clients (legacy.go)
	securityOptions              // authentication and limits (security.go)
}

func newFlagSet(o *options, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to listen on (host:port; port 0 picks a free one)")
	fs.StringVar(&o.path, "path", gateway.DefaultPath, "path of the MCP endpoint")
	fs.StringVar(&o.upstreamURL, "upstream", "", "the upstream MCP server (required): "+upstreamKinds+", e.g. http://127.0.0.1:3001/mcp or stdio:/usr/local/bin/server --flag")
	fs.IntVar(&o.shards, "shards", gateway.DefaultShards, "session shards (rounded up to a power of two)")
	fs.IntVar(&o.maxSessions, "max-sessions", gateway.DefaultMaxSessions, "maximum live sessions; initialize beyond it gets 503 with Retry-After")
	fs.DurationVar(&o.idleTimeout, "session-idle-timeout", gateway.DefaultSessionIdleTimeout, "end sessions idle this long (no requests, calls or connected streams)")
	fs.DurationVar(&o.maxAge, "session-max-age", gateway.DefaultSessionMaxAge, "end sessions this long after creation (0 = no limit)")
	fs.IntVar(&o.maxStreams, "max-streams-per-session", gateway.DefaultMaxStreamsPerSession, "open SSE streams per session; beyond it 429 with Retry-After")
	fs.IntVar(&o.ringSize, "ring-size", gateway.DefaultRingSize, "events buffered per stream (rounded up to a power of two)")
	o.ringBytes = byteSize(gateway.DefaultRingBytes)
	fs.Var(&o.ringBytes, "ring-bytes", "bytes buffered per stream, a `size` (e.g. 1MiB, 512KiB, 65536)")
	fs.StringVar(&o.dropPolicy, "drop-policy", "drop-oldest", "what a full stream does with droppable events: drop-oldest | drop-newest | disconnect")
	fs.DurationVar(&o.heartbeat, "heartbeat", gateway.DefaultHeartbeat, "SSE keep-alive comment interval on idle streams (0 = none, else at least 100ms)")
	fs.DurationVar(&o.streamRetention, "stream-retention", gateway.DefaultStreamRetention, "keep finished POST answer streams resumable this long")
	fs.DurationVar(&o.wholeAnswerWindow, "whole-answer-window", gateway.DefaultWholeAnswerWindow, "hold a call's answer this long so a short one goes out whole (an SSE answer as one body, a stdio or legacy upstream's response as JSON); a longer one is streamed after it (0 = always stream at once)")
	fs.DurationVar(&o.retryHint, "retry-hint", gateway.DefaultRetryHint, "SSE retry hint sent to 2025-11-25 clients and on shutdown")
	fs.DurationVar(&o.writeStall, "write-stall-timeout", gateway.DefaultWriteStallTimeout, "cut a client connection whose write made no progress this long (the stream stays resumable)")
	o.sendBuf = byteSize(gateway.DefaultStreamSendBuffer)
	fs.Var(&o.sendBuf, "stream-send-buffer", "kernel send buffer (SO_SNDBUF) of stream connections, a `size`: a client that stops reading holds about this much (doubled by Linux) before the drop policy applies (0 = kernel autotuning, up to 4 MiB)")
	fs.DurationVar(&o.maxConnection, "stream-max-connection", 0, "close stream connections after this long with a retry hint so clients poll and resume (2025-11-25 POST answers and standalone streams; 0 = never)")
	fs.StringVar(&o.allowedOrigins, "allowed-origins", "", "comma-separated allowed Origin values (scheme://host[:port], * = any); default: loopback origins when listening on loopback, else same-origin")
	fs.StringVar(&o.allowedHosts, "allowed-hosts", "", "comma-separated allowed Host names (* = any); default: loopback names when listening on loopback, else any")
	o.maxBody = byteSize(gateway.DefaultMaxBodyBytes)
	fs.Var(&o.maxBody, "max-body", "maximum POST body, a `size` such as 4MiB (larger gets 413)")
	fs.IntVar(&o.upstreamMaxConns, "upstream-max-conns", upstream.DefaultMaxConns, "pooled upstream connections for POSTs (a POST answered with SSE holds one until it ends)")
	fs.StringVar(&o.upstreamCA, "upstream-ca", "", "PEM file of CA certificates trusted for an https upstream, in addition to the system roots")
	fs.DurationVar(&o.upstreamTimeout, "upstream-timeout", gateway.DefaultUpstreamTimeout, "time an upstream POST may take until its answer starts, and an initialize until its answer (then 504); stdio: time for the initialize answer and for each write to the process")
	o.upstreamOptions.addFlags(fs)
	fs.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:9090", "address of the admin listener: /metrics, /healthz, /readyz, /debug/pprof, the admin API (/admin/v1/) and page (/admin/); empty = off")
	fs.StringVar(&o.adminTokenFile, "admin-token-file", "", "file holding the bearer token the admin API requires (without it the API answers 401)")
	fs.DurationVar(&o.drainWindow, "drain-window", gateway.DefaultDrainWindow, "on SIGTERM/SIGINT, end the stream connections spread over this long so clients do not all reconnect at once (0 = all at once); a second signal cuts it short")
	fs.StringVar(&o.stateFile, "state-file", "", "keep sessions across a restart: shutdown writes every session to this file (and leaves the upstream sessions open), the next start restores them and removes it; a damaged file is refused and kept as FILE.refused (empty = sessions end at shutdown)")
	addEraFlags(fs, &o.eraOptions)
	o.legacyOptions.addFlags(fs)
	o.securityOptions.addFlags(fs)
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "time allowed for an orderly shutdown on SIGINT/SIGTERM")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug | info | warn | error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text | json")
	o.clusterOptions.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `mcpgate gateway: an MCP session gateway (Streamable HTTP, protocol 2025-03-26..2025-11-25,
and the stateless revision 2026-07-28, bridged to whichever era the upstream speaks;
legacy HTTP+SSE clients, protocol 2024-11-05 on, at -legacy-sse-path).

Usage: gateway -upstream URL|stdio:COMMAND [flags]

Clients connect to http://<listen><path> exactly as they would to the upstream
server. Every flag can also be set by an environment variable MCPGATE_<FLAG>
(upper case, dashes as underscores, e.g. MCPGATE_RING_SIZE=512); flags win.

Flags:
`)
		fs.PrintDefaults()
	}
	return fs
}

// envName is the environment twin of a flag.
func envName(flagName string) string {
	return "MCPGATE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// secretFlags are the flags whose values an error never repeats: the
// environment is where their secrets are meant to be given.
var secretFlags = map[string]bool{"upstream-env": true, "cluster-password": true, "cluster-token": true}

// applyEnv sets flags from their environment twins; the command line,
// parsed afterwards, overrides them.
func applyEnv(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := fs.Set(f.Name, v); e != nil {
				shown := fmt.Sprintf("=%q", v)
				if secretFlags[f.Name] {
					shown = ""
				}
				err = fmt.Errorf("invalid %s%s (flag -%s): %v", envName(f.Name), shown, f.Name, e)
			}
		}
	})
	return err
}

func run(args []string, stdout, stderr io.Writer) int {
	if removedFlag(args) {
		fmt.Fprintln(stderr, "gateway: -metrics-path was removed: the metrics are served at /metrics on the admin listener (-admin-listen)")
		return 2
	}
	var o options
	fs := newFlagSet(&o, stderr)
	if err := applyEnv(fs); err != nil {
		fmt.Fprintln(stderr, "gateway:", err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gateway: unexpected arguments %q\n", fs.Args())
		return 2
	}
	logger, err := newLogger(o.logLevel, o.logFormat, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "gateway:", err)
		return 2
	}
	cfg, err := o.config(logger)
	if err != nil {
		fmt.Fprintln(stderr, "gateway:", err)
		return 2
	}
	defer closeAuth(cfg)
	node, err := o.openCluster(&cfg, logger)
	if err != nil {
		fmt.Fprintln(stderr, "gateway:", err)
		return 2
	}
	defer closeCluster(node, logger) // after the Server's Shutdown
	srv, err := gateway.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "gateway:", err)
		return 2
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintf(stderr, "gateway: -listen %s: %v\n", o.listen, err)
		_ = srv.Shutdown(context.Background())
		return 1
	}
	var admin *adminServer
	if o.adminListen != "" {
		if admin, err = startAdmin(srv, o.adminListen, logger); err != nil {
			fmt.Fprintf(stderr, "gateway: -admin-listen %s: %v\n", o.adminListen, err)
			_ = ln.Close()
			_ = srv.Shutdown(context.Background())
			return 1
		}
	}
	defer reloadOnHUP(cfg, logger)()
	// Signals are caught before the address is announced: a script may
	// send SIGTERM as soon as it has read it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	// Scripts read these two lines: the MCP endpoint first, then the admin
	// listener (absent when -admin-listen is empty).
	fmt.Fprintf(stdout, "listening on http://%s%s\n", ln.Addr(), cfg.Path)
	if admin != nil {
		fmt.Fprintf(stdout, "admin on http://%s\n", admin.addr)
	}
	logger.Info("gateway started", "listen", ln.Addr().String(), "path", cfg.Path, "upstream", cluster.RedactURLs(o.upstreamURL),
		"admin", o.adminListen, "shards", cfg.Shards, "ring_size", cfg.RingSize, "ring_bytes", cfg.RingBytes,
		"drop_policy", cfg.DropPolicy.String())
	logSecurity(logger, cfg, &o.securityOptions)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		if err != nil {
			logger.Error("serve failed", "err", err)
			_ = srv.Shutdown(context.Background())
			admin.stop(logger)
			return 1
		}
		admin.stop(logger)
		return 0
	case sig := <-sigs:
		logger.Info("shutting down", "signal", sig.String(), "drain_window", o.drainWindow.String(), "timeout", o.shutdownTimeout.String())
	}
	code := shutdown(srv, sigs, o.shutdownTimeout, logger)
	<-served
	// The admin listener outlives the drain, so /readyz reports it, and
	// stops last.
	admin.stop(logger)
	logUpstreamStats(logger, cfg.Upstream)
	logger.Info("stopped")
	return code
}

// removedFlag reports whether args or the environment still set
// -metrics-path, which left with the metrics' move to the admin listener.
func removedFlag(args []string) bool {
	if _, ok := os.LookupEnv(envName("metrics-path")); ok {
		return true
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "metrics-path" {
			return true
		}
	}
	return false
}

// shutdown runs the Server's Shutdown (the paced drain first) bounded by
// timeout; a further SIGTERM or SIGINT meanwhile cuts the drain short. It
// returns the exit status: 1 if the shutdown had to cut work short.
func shutdown(srv *gateway.Server, sigs <-chan os.Signal, timeout time.Duration, logger *slog.Logger) int {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }() // waited for below
	for {
		select {
		case err := <-done:
			if err != nil {
				logger.Error("shutdown incomplete", "err", err)
				return 1
			}
			return 0
		case sig := <-sigs:
			logger.Warn("second signal: cutting the drain short", "signal", sig.String())
			srv.CutDrain()
		}
	}
}

// adminServer is the admin listener's net/http server, owned by run: it
// starts before the MCP listener is announced and stops after Shutdown.
type adminServer struct {
	http *http.Server
	addr net.Addr
	done chan struct{}
}

// startAdmin serves srv.AdminHandler on addr. On a loopback address the
// handler accepts loopback Host names only (DNS rebinding); elsewhere it
// serves any, and the metrics, health and profiles are unauthenticated.
func startAdmin(srv *gateway.Server, addr string, logger *slog.Logger) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	loopback := isLoopback(ln.Addr())
	if !loopback {
		logger.Warn("the admin listener is not on a loopback address: /metrics, /healthz, /readyz and /debug/pprof answer anyone who reaches it (the admin API still needs its token)",
			"admin", ln.Addr().String())
	}
	a := &adminServer{
		http: &http.Server{
			Handler:           srv.AdminHandler(loopback),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       60 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		},
		addr: ln.Addr(),
		done: make(chan struct{}),
	}
	go func() { // owned by a: stop waits for it
		defer close(a.done)
		if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin listener failed", "err", err)
		}
	}()
	return a, nil
}

// stop ends the admin listener: requests in progress get a moment to
// finish (a running CPU profile does not hold the exit up). nil-safe.
func (a *adminServer) stop(logger *slog.Logger) {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := a.http.Shutdown(ctx); err != nil {
		logger.Debug("admin listener: closing the remaining connections", "err", err)
		_ = a.http.Close()
	}
	<-a.done
}

func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// readToken reads the admin token from file: its content without
// surrounding whitespace, which must not be empty.
func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", file)
	}
	return tok, nil
}

// caConfig trusts the PEM certificates in file in addition to the system
// roots.
func caConfig(file string) (*tls.Config, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate found", file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// minHeartbeat is the shortest -heartbeat: the sweeper wakes every quarter
// heartbeat, idle or not, so a shorter one keeps a core busy.
const minHeartbeat = 100 * time.Millisecond

// config turns the flags into a gateway.Config, naming the flag on errors.
func (o *options) config(logger *slog.Logger) (gateway.Config, error) {
	var cfg gateway.Config
	if o.upstreamURL == "" {
		return cfg, errors.New("-upstream is required: " + upstreamKinds)
	}
	if o.listen == "" {
		return cfg, errors.New("-listen must not be empty (it would listen on every interface, on a random port); give host:port")
	}
	checks := []struct {
		name string
		bad  bool
	}{
		{"-shards must be between 1 and 65536", o.shards < 1 || o.shards > 1<<16},
		{"-max-sessions must be at least 1", o.maxSessions < 1},
		{"-session-idle-timeout must be positive", o.idleTimeout <= 0},
		{"-session-max-age must not be negative", o.maxAge < 0},
		{"-max-streams-per-session must be at least 1", o.maxStreams < 1},
		{"-ring-size must be between 1 and 16777216", o.ringSize < 1 || o.ringSize > ringbuf.MaxCapacity},
		{"-ring-bytes must be at least 1KiB (an answer too large for the ring is replaced by an error, which must fit)", o.ringBytes < 1024},
		{"-stream-send-buffer must not be negative", o.sendBuf < 0},
		{"-heartbeat must be 0 (none) or at least 100ms (the sweeper runs every quarter heartbeat)", o.heartbeat < 0 || (o.heartbeat > 0 && o.heartbeat < minHeartbeat)},
		{"-stream-retention must be positive", o.streamRetention <= 0},
		{"-retry-hint must be positive", o.retryHint <= 0},
		{"-write-stall-timeout must be positive", o.writeStall <= 0},
		{"-stream-max-connection must not be negative", o.maxConnection < 0},
		{"-max-body must be at least 1", o.maxBody < 1},
		{"-upstream-max-conns must be at least 1", o.upstreamMaxConns < 1},
		{"-upstream-timeout must be positive", o.upstreamTimeout <= 0},
		{"-shutdown-timeout must be positive", o.shutdownTimeout <= 0},
		{"-drain-window must not be negative", o.drainWindow < 0},
		{"-whole-answer-window must not be negative", o.wholeAnswerWindow < 0},
	}
	for _, c := range checks {
		if c.bad {
			return cfg, errors.New(c.name)
		}
	}
	policy, err := ringbuf.ParsePolicy(o.dropPolicy)
	if err != nil {
		return cfg, fmt.Errorf("-drop-policy %q: want drop-oldest, drop-newest or disconnect", o.dropPolicy)
	}
	if !strings.HasPrefix(o.path, "/") || strings.ContainsAny(o.path, "?# \t\r\n") {
		return cfg, fmt.Errorf("-path %q must start with / and hold no query, fragment or blank", o.path)
	}
	var tlsConf *tls.Config
	if o.upstreamCA != "" {
		if tlsConf, err = caConfig(o.upstreamCA); err != nil {
			return cfg, fmt.Errorf("-upstream-ca: %v", err)
		}
	}
	var token string
	if o.adminTokenFile != "" {
		if token, err = readToken(o.adminTokenFile); err != nil {
			return cfg, fmt.Errorf("-admin-token-file: %v", err)
		}
	}
	up, err := o.newUpstream(logger, tlsConf)
	if err != nil {
		return cfg, err
	}
	cfg = gateway.Config{
		Upstream:             up,
		Path:                 o.path,
		Shards:               o.shards,
		MaxSessions:          o.maxSessions,
		SessionIdleTimeout:   o.idleTimeout,
		SessionMaxAge:        o.maxAge,
		MaxStreamsPerSession: o.maxStreams,
		RingSize:             o.ringSize,
		RingBytes:            int(o.ringBytes),
		DropPolicy:           policy,
		Heartbeat:            o.heartbeat,
		StreamRetention:      o.streamRetention,
		WholeAnswerWindow:    streamAtOnce(o.wholeAnswerWindow),
		RetryHint:            o.retryHint,
		WriteStallTimeout:    o.writeStall,
		StreamMaxConnection:  o.maxConnection,
		AllowedOrigins:       splitList(o.allowedOrigins),
		AllowedHosts:         splitList(o.allowedHosts),
		MaxBodyBytes:         int(o.maxBody),
		UpstreamTimeout:      o.upstreamTimeout,
		StreamSendBuffer:     int(o.sendBuf),
		DrainWindow:          o.drainWindow,
		StateFile:            o.stateFile,
		Logger:               logger,
	}
	if o.drainWindow == 0 {
		cfg.DrainWindow = -1 // the flag's 0 means all at once
	}
	cfg.AdminToken = token
	if o.sendBuf == 0 {
		cfg.StreamSendBuffer = -1 // the flag's 0 means kernel autotuning
	}
	if o.maxAge == 0 {
		cfg.SessionMaxAge = -1 // the flag's 0 means no limit
	}
	if o.heartbeat == 0 {
		cfg.Heartbeat = -1
	}
	if err := o.eraOptions.apply(&cfg); err != nil {
		return cfg, err
	}
	if err := o.legacyOptions.apply(&cfg); err != nil {
		return cfg, err
	}
	if err := o.securityOptions.apply(&cfg, logger); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// streamAtOnce maps -whole-answer-window 0 (and below) to the Config's
// "always stream at once", which is negative (its 0 means the default).
func streamAtOnce(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

func splitList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("-log-format %q: want text or json", format)
	}
}

// byteSize is a flag value in bytes that accepts KiB/MiB/GiB suffixes.
type byteSize int

func (b *byteSize) String() string { return strconv.Itoa(int(*b)) }

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	orig := s
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000_000}, {"GB", 1000_000_000}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return fmt.Errorf("invalid size %q (want e.g. 65536, 512KiB, 4MiB)", orig)
	}
	*b = byteSize(n * mult)
	return nil
}
