package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// reinitSession stands in for the upstream session of a restored session
// whose upstream side could not be carried over the restart (a stdio child
// died with the gateway, a legacy HTTP+SSE stream ended with it). On first
// use (a client request, or its standalone stream being read) it opens a
// new upstream session from the session's cached initialize request, sends
// notifications/initialized, replays the log level and resource
// subscriptions the client had set, and tells the client through its
// standalone stream what the protocol lets a server say unprompted: the
// lists it declared listChanged for may have changed, and so may the
// resources it subscribed to. A failure to re-initialize is retried on the
// next use (an upstream at its process cap gives the client 503 with
// Retry-After meanwhile, as an initialize at the cap does); an upstream that now refuses the initialize, or negotiates
// another protocol version, ends the client's session (ErrSessionGone, so
// the client gets 404 and starts over).
//
// mu is a leaf lock held across the re-initialization I/O: only the calls of
// this one session wait for it. Readers that only look (ID, the admin API)
// read done instead and never wait.
type reinitSession struct {
	srv     *Server
	sess    *session // set once, right after the session is built
	init    []byte
	kind    string // the upstream kind the session had
	version string // the protocol version it had negotiated upstream

	mu     sync.Mutex
	inner  upstream.Session
	closed bool
	// done holds inner once it is set, read without mu.
	done atomic.Pointer[upstreamBox]
	// aborted is set by abort, which never waits for mu: a
	// re-initialization under way then ends the session it opened.
	aborted atomic.Bool
	// tag marks the ids of this upstream incarnation's server-to-client
	// requests (incarnation.go), set before the first can be relayed.
	tag atomic.Pointer[string]
}

// upstreamBox holds an upstream session for an atomic.Pointer.
type upstreamBox struct{ s upstream.Session }

var _ upstream.Session = (*reinitSession)(nil)

// current returns the upstream session once re-initialized, else nil,
// without waiting for a re-initialization under way.
func (r *reinitSession) current() upstream.Session {
	if b := r.done.Load(); b != nil {
		return b.s
	}
	return nil
}

// ID is the new upstream session's id once there is one.
func (r *reinitSession) ID() string {
	if in := r.current(); in != nil {
		return in.ID()
	}
	return ""
}

func (r *reinitSession) Version() string { return r.version }

// Kind is the upstream kind of the session.
func (r *reinitSession) Kind() string { return r.kind }

func (r *reinitSession) Send(ctx context.Context, body []byte) (*upstream.Reply, error) {
	in, err := r.get(ctx)
	if err != nil {
		return nil, err
	}
	// The client's answers to server-to-client requests go back under the
	// upstream's ids; those to an earlier incarnation's are dropped.
	if body = untagAnswers(body, r.tagged()); body == nil {
		return &upstream.Reply{Accepted: true}, nil
	}
	return in.Send(ctx, body)
}

// tagged is the incarnation's tag, "" before the upstream session exists.
func (r *reinitSession) tagged() string {
	if t := r.tag.Load(); t != nil {
		return *t
	}
	return ""
}

func (r *reinitSession) Listen(ctx context.Context) (upstream.Stream, error) {
	in, err := r.get(ctx)
	if err != nil {
		return nil, err
	}
	return in.Listen(ctx)
}

// Close ends the new upstream session, if one was opened; later calls
// find the session gone.
func (r *reinitSession) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	in := r.inner
	r.mu.Unlock()
	if in == nil {
		return nil
	}
	return in.Close(ctx)
}

// abort is Close for reapLater with its queue full (abortUpstream),
// without waiting for mu (held across a re-initialization): the new
// upstream session, if there is one, is ended without waiting; one still
// being opened is ended by get once it is. It reports false only for a
// new session left to expire upstream by itself.
func (r *reinitSession) abort() bool {
	r.aborted.Store(true)
	if in := r.current(); in != nil {
		return abortUpstream(in)
	}
	return true
}

// get returns the upstream session, re-initializing it first if needed.
func (r *reinitSession) get(ctx context.Context) (upstream.Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.aborted.Load() {
		return nil, fmt.Errorf("re-initialize: %w", upstream.ErrSessionGone)
	}
	if r.inner != nil {
		return r.inner, nil
	}
	srv := r.srv
	rctx, cancel := context.WithTimeout(ctx, srv.cfg.UpstreamTimeout)
	defer cancel()
	sessions, _, _ := srv.Upstreams(rctx) // the era-chosen session side (era.go)
	in, answer, err := sessions.Connect(rctx, r.init)
	if errors.Is(err, upstream.ErrAtCapacity) {
		// The gateway's own process cap, not an upstream failure (an
		// initialize at the cap is not counted as one either): the client
		// gets 503 with Retry-After (upstreamFailed) and its next use
		// tries again.
		srv.log.Info("re-initializing a restored session's upstream must wait: the upstream is at capacity", "session", shortID(r.sess.id), "err", err)
		return nil, fmt.Errorf("re-initialize: %w", err)
	}
	if err != nil {
		srv.metrics.upstreamFailure(err)
		srv.log.Warn("re-initializing a restored session's upstream failed", "session", shortID(r.sess.id), "err", err)
		return nil, fmt.Errorf("re-initialize: %w", err)
	}
	if in == nil {
		srv.log.Warn("the upstream refused to re-initialize a restored session: it ends", "session", shortID(r.sess.id), "answer", string(answer))
		return nil, fmt.Errorf("re-initialize refused: %w", upstream.ErrSessionGone)
	}
	if in.Version() != r.version {
		_ = in.Close(rctx)
		srv.log.Warn("a restored session's upstream re-initialized with another protocol version: it ends",
			"session", shortID(r.sess.id), "had", r.version, "got", in.Version())
		return nil, fmt.Errorf("re-initialize: version %s instead of %s: %w", in.Version(), r.version, upstream.ErrSessionGone)
	}
	srv.upstreamSucceeded()
	if r.tag.Load() == nil {
		tag := newIncarnationTag()
		r.tag.Store(&tag)
	}
	r.replay(rctx, in)
	r.inner = in
	r.done.Store(&upstreamBox{in})
	if r.aborted.Load() {
		// abort ran meanwhile and may not have seen done: the session
		// ended, and so does the upstream session just opened.
		_ = in.Close(rctx)
		return nil, fmt.Errorf("re-initialize: %w", upstream.ErrSessionGone)
	}
	srv.log.Info("re-initialized a restored session's upstream", "session", shortID(r.sess.id), "upstream_session", in.ID())
	// Told after r.inner is set: pushing may wake the standalone pump,
	// which calls Listen, which takes mu (held here: it waits).
	srv.announceReinit(r.sess)
	// From its first use on, the upstream's standalone stream feeds the
	// session's, as for any restored session (its pump's Listen waits for
	// mu). A cluster node adopts streams itself (cluster.go).
	if st := r.sess.stream(0); st != nil && r.sess.cluster == nil {
		srv.ensureStandalonePump(r.sess, st)
	}
	return in, nil
}

// replay sends what completes the handshake and restores the client's
// settings on the new upstream session: notifications/initialized, the
// last logging/setLevel and every resources/subscribe. Answers are read
// and dropped (the client got its own before the restart); failures are
// logged, not fatal.
func (r *reinitSession) replay(ctx context.Context, in upstream.Session) {
	sess := r.sess
	sess.mu.Lock()
	level := sess.restart.logLevel
	subs := make([]string, 0, len(sess.restart.subs))
	for uri := range sess.restart.subs {
		subs = append(subs, uri)
	}
	sess.mu.Unlock()
	msgs := [][]byte{[]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)}
	n := 0
	request := func(method string, params []byte) []byte {
		n++
		b := append([]byte(`{"jsonrpc":"2.0","id":"mcpgate-replay-`), strconv.Itoa(n)...)
		b = append(b, `","method":`...)
		b = jsonrpc.AppendString(b, method)
		b = append(b, `,"params":`...)
		b = append(b, params...)
		return append(b, '}')
	}
	if level != nil {
		msgs = append(msgs, request("logging/setLevel", level))
	}
	for _, uri := range subs {
		msgs = append(msgs, request("resources/subscribe", append(jsonrpc.AppendString([]byte(`{"uri":`), uri), '}')))
	}
	for _, m := range msgs {
		reply, err := in.Send(ctx, m)
		if err != nil {
			r.srv.log.Warn("replaying a restored session's setting upstream failed", "session", shortID(sess.id), "message", string(m), "err", err)
			continue
		}
		if reply.Stream != nil {
			r.relayReplayed(in, reply.Stream)
			_ = reply.Stream.Close()
		}
	}
}

// relayReplayed reads the answer stream of a replayed request, bounded as
// upstream.Drain is. Its response is dropped, but not what else a stdio or
// legacy upstream's demux routed to it as the newest call in flight: a
// server-to-client request (roots/list, which servers send once
// initialized), a log message. Those go to the client's standalone stream
// as they would have without the replay; a request no stream can take is
// refused upstream, so the server does not wait for ever.
func (r *reinitSession) relayReplayed(in upstream.Session, up upstream.Stream) {
	guard := time.AfterFunc(time.Second, func() { _ = up.Close() })
	defer guard.Stop()
	srv, sess := r.srv, r.sess
	var p jsonrpc.Parser
	for n := 0; n < 64; n++ {
		msg, err := up.Next()
		if err != nil {
			return
		}
		class, key, respID := classify(&p, msg)
		if respID != nil {
			continue // the replayed request's answer
		}
		if st := sess.stream(0); st != nil && srv.deliver(sess, st, class, key, msg, false, nil) {
			continue
		}
		msgs, _, perr := p.Parse(msg)
		if perr != nil || len(msgs) != 1 || msgs[0].Kind != jsonrpc.KindRequest {
			continue
		}
		e := jsonrpc.AppendError(nil, msgs[0].ID, jsonrpc.CodeInternalError, "the client has no stream open to take the request", nil)
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if reply, err := in.Send(sctx, e); err == nil && reply.Stream != nil {
			_ = reply.Stream.Close()
		}
		cancel()
	}
}

// announceReinit tells the client, through its standalone stream, what a
// server may say unprompted after its upstream session was re-initialized:
// the lists whose changes the server's capabilities announce may have
// changed (notifications/*/list_changed), and so may every resource the
// client subscribed to (notifications/resources/updated). Nothing is said
// where the capabilities do not allow it, or without a standalone stream.
func (s *Server) announceReinit(sess *session) {
	st := sess.stream(0)
	if st == nil || sess.restart == nil || len(sess.restart.caps) == 0 {
		return
	}
	caps := sess.restart.caps
	var msgs [][]byte
	for _, kind := range []string{"tools", "prompts", "resources"} {
		if v, ok := jsonrpc.Lookup(caps, kind, "listChanged"); ok && string(v) == "true" {
			msgs = append(msgs, []byte(`{"jsonrpc":"2.0","method":"notifications/`+kind+`/list_changed"}`))
		}
	}
	if v, ok := jsonrpc.Lookup(caps, "resources", "subscribe"); ok && string(v) == "true" {
		sess.mu.Lock()
		for uri := range sess.restart.subs {
			m := append([]byte(`{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":`), jsonrpc.AppendString(nil, uri)...)
			msgs = append(msgs, append(m, "}}"...))
		}
		sess.mu.Unlock()
	}
	var p jsonrpc.Parser
	for _, m := range msgs {
		class, key, _ := classify(&p, m)
		s.push(st, class, key, m, nil)
	}
}

// noteReplayable records the settings a re-initialized upstream session
// must get again (Config.StateFile only): the params of the last
// logging/setLevel, and the resources subscribed to and not unsubscribed.
func (s *session) noteReplayable(msgs []jsonrpc.Message) {
	rs := s.restart
	if rs == nil {
		return
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Kind != jsonrpc.KindRequest {
			continue
		}
		switch string(m.Method) {
		case "logging/setLevel":
			if p, ok := jsonrpc.Lookup(m.Raw, "params"); ok {
				s.mu.Lock()
				rs.logLevel = bytes.Clone(p)
				s.mu.Unlock()
			}
		case "resources/subscribe", "resources/unsubscribe":
			raw, ok := jsonrpc.Lookup(m.Raw, "params", "uri")
			if !ok {
				continue
			}
			uri, ok := jsonrpc.Unquote(raw)
			if !ok {
				continue
			}
			s.mu.Lock()
			if string(m.Method) == "resources/subscribe" {
				if rs.subs == nil {
					rs.subs = make(map[string]struct{}, 1)
				}
				rs.subs[uri] = struct{}{}
			} else {
				delete(rs.subs, uri)
			}
			s.mu.Unlock()
		}
	}
}

// errNoUpstream: a saved session has neither an upstream binding that can
// be re-attached nor an initialize request to open a new one.
var errNoUpstream = errors.New("neither a resumable upstream session nor a cached initialize")
