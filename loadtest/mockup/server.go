package mockup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/mcpgate/mcpgate/gateway/sse"
)

// ErrShutdown is returned when work is started on a server that is shutting down.
var ErrShutdown = errors.New("mockup: server shut down")

// errServerClosed is the close reason of streams ended by Shutdown.
var errServerClosed = errors.New("mockup: server closed")

// Server is the mock MCP upstream. Create it with New.
type Server struct {
	cfg      Config
	http     *fasthttp.Server
	sessions *xsync.MapOf[string, *session]
	stats    stats
	parsers  fastjson.ParserPool
	ctx      context.Context
	cancel   context.CancelFunc
	done     <-chan struct{}

	// goMu guards wg.Add against Shutdown's wg.Wait.
	goMu     sync.Mutex
	wg       sync.WaitGroup
	shutdown bool
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:      cfg,
		sessions: xsync.NewMapOf[string, *session](xsync.WithPresize(1024), xsync.WithGrowOnly()),
		ctx:      ctx,
		cancel:   cancel,
		done:     ctx.Done(),
	}
	s.http = &fasthttp.Server{
		Handler:               s.Handler,
		Name:                  ServerName,
		ReadBufferSize:        8192,
		WriteBufferSize:       4096,
		ReadTimeout:           30 * time.Second,
		IdleTimeout:           60 * time.Second,
		MaxRequestBodySize:    4 << 20,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		CloseOnShutdown:       true,
	}
	return s, nil
}

// Config returns the configuration in use, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Serve accepts connections on ln until Shutdown. It returns nil after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.http.Serve(ln)
	if err != nil && s.ctx.Err() != nil {
		return nil
	}
	return err
}

// Shutdown ends every session and stream, stops the listener and waits for the
// server's goroutines, or until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.goMu.Lock()
	s.shutdown = true
	s.goMu.Unlock()
	s.cancel()
	s.sessions.Range(func(id string, sess *session) bool {
		sess.close()
		return true
	})
	err := s.http.ShutdownWithContext(ctx)
	waited := make(chan struct{})
	go func() { s.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		return fmt.Errorf("mockup.Shutdown: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("mockup.Shutdown: %w", err)
	}
	return nil
}

// goStart runs f on a goroutine owned by the server.
func (s *Server) goStart(f func()) error {
	s.goMu.Lock()
	defer s.goMu.Unlock()
	if s.shutdown {
		return ErrShutdown
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return nil
}

// Snapshot returns the current counters (the /stats document).
func (s *Server) Snapshot() Snapshot { return s.stats.snapshot() }

// emit appends one notification built by build to st, applying loss and duplicate
// injection, and counts it in counter. buf is scratch space, returned for reuse. sent
// reports whether the notification went out (false when a loss was injected).
func (s *Server) emit(ctx context.Context, st *stream, buf []byte, seq uint64,
	build func(dst []byte, seq uint64, sentAt int64) []byte, counter *atomic.Int64) ([]byte, bool, error) {
	if n := s.cfg.InjectLossEvery; n > 0 && seq%uint64(n) == 0 {
		s.stats.injectedLoss.Add(1)
		return buf, false, nil
	}
	buf = build(buf[:0], seq, time.Now().UnixNano())
	if err := st.append(ctx, buf); err != nil {
		return buf, false, err
	}
	counter.Add(1)
	if n := s.cfg.InjectDupEvery; n > 0 && seq%uint64(n) == 0 {
		if err := st.append(ctx, buf); err != nil {
			return buf, true, err
		}
		counter.Add(1)
		s.stats.injectedDup.Add(1)
	}
	return buf, true, nil
}

// Handler serves /stats and /metrics, and MCP on every other path.
func (s *Server) Handler(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/stats":
		s.serveStats(ctx)
		return
	case "/metrics":
		s.serveMetrics(ctx)
		return
	}
	switch {
	case ctx.IsPost():
		s.handlePost(ctx)
	case ctx.IsGet():
		s.handleGet(ctx)
	case ctx.IsDelete():
		s.handleDelete(ctx)
	default:
		if s.cfg.Era == EraStateless {
			ctx.Response.Header.Set("Allow", "POST")
		} else {
			ctx.Response.Header.Set("Allow", "GET, POST, DELETE")
		}
		s.fail(ctx, fasthttp.StatusMethodNotAllowed, nil, CodeTransport, "method not allowed", nil)
	}
}

func (s *Server) serveStats(ctx *fasthttp.RequestCtx) {
	b, err := marshalSnapshot(s.Snapshot())
	if err != nil {
		ctx.Error(err.Error(), fasthttp.StatusInternalServerError)
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// serveMetrics writes a few Prometheus text-format gauges, enough for the harness's
// soak sampling.
func (s *Server) serveMetrics(ctx *fasthttp.RequestCtx) {
	var b []byte
	b = append(b, "# TYPE go_goroutines gauge\ngo_goroutines "...)
	b = strconv.AppendInt(b, int64(runtime.NumGoroutine()), 10)
	if rss, ok := residentBytes(); ok {
		b = append(b, "\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes "...)
		b = strconv.AppendInt(b, rss, 10)
	}
	b = append(b, "\n# TYPE mcpgate_loadtest_upstream_sessions gauge\nmcpgate_loadtest_upstream_sessions "...)
	b = strconv.AppendInt(b, s.stats.sessionsActive.Load(), 10)
	b = append(b, '\n')
	ctx.SetContentType("text/plain; version=0.0.4")
	ctx.SetBody(b)
}

// residentBytes reads this process's RSS from /proc/self/statm.
func residentBytes() (int64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * int64(os.Getpagesize()), true
}

// fail answers with status and a JSON-RPC error body.
func (s *Server) fail(ctx *fasthttp.RequestCtx, status int, id []byte, code int, msg string, data []byte) {
	if status >= 400 {
		s.stats.httpErrors.Add(1)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(appendError(ctx.Response.Body()[:0], id, code, msg, data))
}

func (s *Server) sessionFromHeader(ctx *fasthttp.RequestCtx) (*session, bool) {
	sid := ctx.Request.Header.Peek("Mcp-Session-Id")
	if len(sid) == 0 {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, CodeTransport, "missing Mcp-Session-Id", nil)
		return nil, false
	}
	sess, ok := s.sessions.Load(string(sid))
	if !ok {
		s.fail(ctx, fasthttp.StatusNotFound, nil, CodeSessionNotFound, "session not found", nil)
		return nil, false
	}
	return sess, true
}

// acceptsAll reports whether an Accept header covers both JSON and SSE.
func acceptsAll(accept []byte) bool {
	return acceptsJSON(accept) && acceptsSSE(accept)
}

func acceptsJSON(a []byte) bool {
	return bytes.Contains(a, []byte("application/json")) || bytes.Contains(a, []byte("application/*")) || bytes.Contains(a, []byte("*/*"))
}

func acceptsSSE(a []byte) bool {
	return bytes.Contains(a, []byte("text/event-stream")) || bytes.Contains(a, []byte("text/*")) || bytes.Contains(a, []byte("*/*"))
}

func supportedSessionVersion(v string) bool {
	switch v {
	case Version20250326, Version20250618, Version20251125:
		return true
	}
	return false
}

func (s *Server) handleDelete(ctx *fasthttp.RequestCtx) {
	if s.cfg.Era == EraStateless {
		ctx.Response.Header.Set("Allow", "POST")
		s.fail(ctx, fasthttp.StatusMethodNotAllowed, nil, CodeTransport, "method not allowed", nil)
		return
	}
	sess, ok := s.sessionFromHeader(ctx)
	if !ok {
		return
	}
	if _, loaded := s.sessions.LoadAndDelete(sess.id); loaded {
		sess.close()
		s.stats.sessionsDeleted.Add(1)
		s.stats.sessionsActive.Add(-1)
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
}

func (s *Server) handleGet(ctx *fasthttp.RequestCtx) {
	if s.cfg.Era == EraStateless {
		ctx.Response.Header.Set("Allow", "POST")
		s.fail(ctx, fasthttp.StatusMethodNotAllowed, nil, CodeTransport, "method not allowed", nil)
		return
	}
	if !acceptsSSE(ctx.Request.Header.Peek("Accept")) {
		s.fail(ctx, fasthttp.StatusBadRequest, nil, CodeTransport, "Accept must include text/event-stream", nil)
		return
	}
	sess, ok := s.sessionFromHeader(ctx)
	if !ok {
		return
	}
	var (
		r   *streamReader
		err error
	)
	if last := ctx.Request.Header.Peek("Last-Event-ID"); len(last) > 0 {
		num, seq, perr := sse.ParseEventID(last)
		var st *stream
		if perr == nil {
			st = sess.stream(num)
		}
		if st != nil {
			r, err = st.attach(seq+1, nil, sess)
		}
		if perr != nil || st == nil || err != nil {
			s.stats.resumesRefused.Add(1)
			s.fail(ctx, fasthttp.StatusBadRequest, nil, CodeTransport, "cannot resume from Last-Event-ID", nil)
			return
		}
		s.stats.resumes.Add(1)
	} else {
		// A fresh GET gets the events no reader has taken yet (pushed while no
		// stream was open), then live ones.
		st := sess.get
		st.mu.Lock()
		from := max(st.taken, st.first)
		st.mu.Unlock()
		r, err = st.attach(from, okComment, sess)
		if err != nil {
			s.fail(ctx, fasthttp.StatusNotFound, nil, CodeSessionNotFound, "session not found", nil)
			return
		}
	}
	s.stats.getStreams.Add(1)
	s.startSSE(ctx, r)
}

var okComment = sse.AppendComment(nil, "ok")

// startSSE sets the SSE headers and r as the response body.
func (s *Server) startSSE(ctx *fasthttp.RequestCtx, r *streamReader) {
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	ctx.Response.ImmediateHeaderFlush = true
	ctx.SetBodyStream(r, -1)
}
