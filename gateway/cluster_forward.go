package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/sessionrec"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// forwardSession stands in for an upstream session that exists on its
// owner node only (a stdio child, a legacy HTTP+SSE stream): each message
// goes to the owner over NATS request/reply ("send"), which forwards it to
// its upstream session; a streamed answer comes back through JetStream (a
// relay: the owner publishes the upstream's messages, this node follows
// them). When the owner dies (its lease runs out) this node claims the
// session and re-initializes the upstream side from the cached initialize
// (reinitSession); the call that met the dead owner gets an error, never
// a hang.
type forwardSession struct {
	srv  *Server
	sess *session
	rec  sessionrec.Upstream

	// local is the re-initialized upstream session once this node owns
	// the session.
	local atomic.Pointer[reinitSession]
}

var _ upstream.Session = (*forwardSession)(nil)

func (f *forwardSession) ID() string      { return f.rec.ID }
func (f *forwardSession) Version() string { return f.rec.Version }

// Kind is the upstream kind of the session.
func (f *forwardSession) Kind() string { return f.rec.Kind }

// becomeOwner switches to a re-initialized upstream session (this node
// claimed the session).
func (f *forwardSession) becomeOwner() {
	f.local.CompareAndSwap(nil, &reinitSession{srv: f.srv, sess: f.sess, init: f.sess.restart.init, kind: f.rec.Kind, version: f.rec.Version})
}

// errOwnerGone: the owner node died during a forwarded exchange.
var errOwnerGone = errors.New("the gateway node owning this session failed; the session's upstream side is re-initialized, the request may or may not have been carried out")

// errNotOwner: a forwarded message reached a node that no longer owns the
// session (it handed it over); the sender learns the owner and resends.
var errNotOwner = errors.New("this node does not own the session (any more)")

func (f *forwardSession) Send(ctx context.Context, body []byte) (*upstream.Reply, error) {
	for relearned := false; ; relearned = true {
		reply, err := f.send(ctx, body)
		if err == nil || relearned || !errors.Is(err, errNotOwner) || !f.relearnOwner(ctx) {
			return reply, err
		}
	}
}

// relearnOwner reads the session's owner from the registry after the node
// believed to own it said it does not; it reports whether the message is
// worth sending again (to another owner, or here).
func (f *forwardSession) relearnOwner(ctx context.Context) bool {
	s := f.srv
	was := s.ownerOf(f.sess)
	rctx, cancel := s.rctx()
	defer cancel()
	rec, cur, _, rev, err := s.clu.c.LoadSession(rctx, f.sess.id)
	s.clu.m.registryReads.Add(1)
	if err != nil || rec == nil {
		return false
	}
	s.learnOwner(f.sess, cur, rev)
	if cur == s.clu.id {
		if len(f.sess.restart.init) == 0 {
			return false
		}
		f.becomeOwner()
		return true
	}
	return cur != was
}

func (f *forwardSession) send(ctx context.Context, body []byte) (*upstream.Reply, error) {
	if l := f.local.Load(); l != nil {
		return l.Send(ctx, body)
	}
	s := f.srv
	owner := s.ownerOf(f.sess)
	msg := make([]byte, 0, len(f.sess.id)+1+len(body))
	msg = append(append(append(msg, f.sess.id...), '\n'), body...)
	out, err := s.clu.c.Request(ctx, owner, "send", msg)
	if err != nil {
		s.clu.m.forwardErrors.Add(1)
		if strings.HasPrefix(err.Error(), "remote: ") {
			if strings.Contains(err.Error(), errNotOwner.Error()) {
				return nil, fmt.Errorf("forward to %s: %w: %w", owner, errNotOwner, upstream.ErrUnavailable)
			}
			if strings.Contains(err.Error(), upstream.ErrSessionGone.Error()) {
				return nil, fmt.Errorf("forward: %w", upstream.ErrSessionGone)
			}
			return nil, fmt.Errorf("forward: %v: %w", err, upstream.ErrUnavailable)
		}
		rctx, cancel := s.rctx()
		defer cancel()
		if s.ensureOwner(rctx, f.sess) {
			f.becomeOwner()
			return nil, fmt.Errorf("%s: %w", errOwnerGone.Error(), upstream.ErrUnavailable)
		}
		return nil, fmt.Errorf("forward to %s: %v: %w", owner, err, upstream.ErrUnavailable)
	}
	s.clu.m.forwards.Add(1) // counted once it succeeded: a counter never goes down
	if len(out) == 0 {
		return nil, fmt.Errorf("forward: empty answer: %w", upstream.ErrUnavailable)
	}
	switch out[0] {
	case 'A':
		return &upstream.Reply{Accepted: true}, nil
	case 'J':
		return &upstream.Reply{JSON: out[1:]}, nil
	case 'S':
		id, err := strconv.ParseUint(string(out[1:]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("forward: bad relay: %w", upstream.ErrUnavailable)
		}
		return &upstream.Reply{Stream: s.followRelay(f.sess, owner, id)}, nil
	}
	return nil, fmt.Errorf("forward: unknown answer: %w", upstream.ErrUnavailable)
}

// Listen is not used on a node that does not own the session: its
// standalone stream is read from JetStream (clusterGet).
func (f *forwardSession) Listen(ctx context.Context) (upstream.Stream, error) {
	if l := f.local.Load(); l != nil {
		return l.Listen(ctx)
	}
	return nil, fmt.Errorf("forward: %w", upstream.ErrNotSupported)
}

// Close ends the session on its owner (a client's DELETE here).
func (f *forwardSession) Close(ctx context.Context) error {
	if l := f.local.Load(); l != nil {
		return l.Close(ctx)
	}
	_, err := f.srv.clu.c.Request(ctx, f.srv.ownerOf(f.sess), "end", []byte(f.sess.id))
	return err
}

// relayBit marks the stream numbers of relays, apart from client streams.
const relayBit = 1 << 62

// serveForwarded runs another node's forwarded exchange on this node,
// which owns the session's upstream side.
func (s *Server) serveForwarded(op string, body []byte) ([]byte, error) {
	sid, msg := string(body), []byte(nil)
	if op == "send" {
		i := strings.IndexByte(sid, '\n')
		if i < 0 {
			return nil, errors.New("malformed forward")
		}
		sid, msg = sid[:i], body[i+1:]
	}
	sess, ok := s.store.Get(sid)
	if !ok {
		// This node may have dropped its copy when another node claimed
		// the session (demote): a sender that did not learn that yet
		// learns the owner and resends. The session is gone only if the
		// registry says so.
		rctx, cancel := s.rctx()
		rec, owner, _, _, err := s.clu.c.LoadSession(rctx, sid)
		cancel()
		s.clu.m.registryReads.Add(1)
		switch {
		case err != nil:
			s.clu.m.registryErrors.Add(1)
			return nil, err
		case rec != nil && owner != s.clu.id:
			return nil, errNotOwner
		}
		return nil, upstream.ErrSessionGone
	}
	if !s.isOwner(sess) {
		// Handed over (a drain): the session lives on with its new owner,
		// which the sender learns from the registry.
		return nil, errNotOwner
	}
	s.clu.m.forwardedServed.Add(1)
	if op == "end" {
		s.endLater(sess, CloseClientDelete, upstreamNow)
		return nil, nil
	}
	sess.touch(s.clock.Now())
	sess.busy.Add(1)
	reply, err := sess.up.Send(sess.context(), msg)
	sess.busy.Add(-1)
	if err != nil {
		if errors.Is(err, upstream.ErrSessionGone) {
			s.endLater(sess, CloseUpstreamGone, upstreamGone)
		}
		return nil, err
	}
	if s.cfg.StateFile != "" || sess.restart != nil {
		sess.noteReplayableRaw(msg)
	}
	switch {
	case reply.Stream != nil:
		sess.mu.Lock()
		sess.nextStream++
		id := relayBit | sess.nextStream
		sess.mu.Unlock()
		up := reply.Stream
		sess.busy.Add(1)
		if !s.goOwned(func(context.Context) { s.relay(sess, id, up) }) {
			sess.busy.Add(-1)
			_ = up.Close()
			return nil, errors.New("shutting down")
		}
		return []byte("S" + strconv.FormatUint(id, 10)), nil
	case reply.JSON != nil:
		return append([]byte{'J'}, reply.JSON...), nil
	default:
		return []byte{'A'}, nil
	}
}

// relay publishes an upstream answer stream's messages for the node that
// forwarded the request, then its end. The forwarding node waits for that
// end while this node lives, so an event JetStream did not store ends the
// relay (the follower answers the calls left with an error), and the end
// marker is published again until it is stored or the session ends.
func (s *Server) relay(sess *session, id uint64, up upstream.Stream) {
	defer sess.busy.Add(-1)
	defer up.Close()
	stop := context.AfterFunc(sess.context(), func() { _ = up.Close() })
	defer stop()
	var seq uint64
	var lost atomic.Bool
	noted := func(err error) {
		if err != nil {
			lost.Store(true)
		}
	}
	for !lost.Load() {
		msg, err := up.Next()
		if err != nil {
			break
		}
		seq++
		msg = tagServerRequests(msg, sess.incarnationTag()) // incarnation.go
		s.clu.c.Publish(sess.id, &sessionrec.Published{Event: sessionrec.Event{Seq: seq, MustDeliver: true, Data: append([]byte(nil), msg...)}, Stream: id}, noted)
	}
	if sess.suspendedForHandover() {
		return
	}
	for backoff := minBackoff; ; backoff = min(backoff*2, 5*time.Second) {
		stored := make(chan error, 1)
		s.clu.c.Publish(sess.id, &sessionrec.Published{Event: sessionrec.Event{Seq: seq}, Stream: id, End: true}, func(err error) { stored <- err })
		select {
		case err := <-stored:
			if err == nil {
				return
			}
		case <-sess.context().Done():
			return
		}
		if !sleepCtx(sess.context(), backoff) {
			return
		}
	}
}

// relayStream reads a relay from JetStream as an upstream.Stream. Like
// every upstream stream it has one reader: Next and NextWithin are not
// called concurrently.
type relayStream struct {
	msgs   chan []byte
	errc   chan error
	cancel context.CancelFunc
	once   sync.Once
	err    error
}

// followRelay starts following a relay published by owner.
func (s *Server) followRelay(sess *session, owner string, id uint64) upstream.Stream {
	ctx, cancel := context.WithCancel(sess.context())
	r := &relayStream{msgs: make(chan []byte, 64), errc: make(chan error, 1), cancel: cancel}
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	started := s.goOwned(func(context.Context) {
		err := s.clu.c.Follow(ctx, sess.id, id, 0, func(p *sessionrec.Published) error {
			last.Store(time.Now().UnixNano())
			if p.End {
				return io.EOF
			}
			select {
			case r.msgs <- p.Data:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		r.errc <- err
	})
	if !started {
		cancel()
		r.errc <- errors.New("shutting down")
		return r
	}
	// A watchdog: an owner that died stops the relay for good.
	s.goOwned(func(context.Context) {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if time.Since(time.Unix(0, last.Load())) < 2*time.Second {
				continue
			}
			rctx, rcancel := s.rctx()
			alive := s.clu.c.NodeAlive(rctx, owner)
			rcancel()
			if !alive {
				cancel()
				return
			}
			last.Store(time.Now().UnixNano())
		}
	})
	return r
}

var _ timedNexter = (*relayStream)(nil)

func (r *relayStream) Next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	select {
	case m := <-r.msgs:
		return m, nil
	case err := <-r.errc:
		return r.ended(err)
	}
}

// NextWithin is Next bounded by d, as the stdio and legacy HTTP+SSE call
// streams have it (upstream.msgStream): a forwarded call whose response
// comes at once is answered with JSON here too (earlyanswer.go). ok is
// false when nothing arrived within d; the stream is then as it was.
func (r *relayStream) NextWithin(d time.Duration) (msg []byte, ok bool, err error) {
	if r.err != nil {
		return nil, true, r.err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case m := <-r.msgs:
		return m, true, nil
	case err := <-r.errc:
		msg, err = r.ended(err)
		return msg, true, err
	case <-t.C:
		return nil, false, nil
	}
}

// ended is Next once the follower ended with err: a message still queued
// before the end, else the end (io.EOF, or the owner's death).
func (r *relayStream) ended(err error) ([]byte, error) {
	select {
	case m := <-r.msgs:
		r.errc <- err // the follower's one send was taken: room for it again
		return m, nil
	default:
	}
	if err == nil || errors.Is(err, io.EOF) {
		r.err = io.EOF
	} else {
		r.err = fmt.Errorf("%s: %w", errOwnerGone.Error(), upstream.ErrUnavailable)
	}
	return nil, r.err
}

func (r *relayStream) Close() error {
	r.once.Do(r.cancel)
	return nil
}

// noteReplayableRaw is noteReplayable for a message body.
func (s *session) noteReplayableRaw(body []byte) {
	var p jsonrpc.Parser
	if msgs, _, perr := p.Parse(body); perr == nil {
		s.noteReplayable(msgs)
	}
}
