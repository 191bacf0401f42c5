package gateway

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/sessionrec"
	"github.com/mcpgate/mcpgate/gateway/sse"
	"github.com/mcpgate/mcpgate/gateway/upstream"
	"github.com/mcpgate/mcpgate/ringbuf"
)

// Cluster is what the gateway needs from a scale-out backend to run as one
// node of several (package cluster implements it on NATS JetStream;
// cmd/gateway passes it in as Config.Cluster). Every method is safe for
// concurrent use. Methods taking a context may do network I/O bounded by
// it; Publish never waits for the backend.
type Cluster interface {
	// NodeID names this node; Tag is its number in [1, 2^20), unique among
	// live nodes.
	NodeID() string
	Tag() uint32
	// SaveSession writes a session's registry entry (rec without stream
	// events, its owner node, its last activity), creating it for rev 0 or
	// replacing revision rev. ok false: the entry changed since (or exists,
	// for rev 0).
	SaveSession(ctx context.Context, rec *sessionrec.Record, owner string, lastActive int64, rev uint64) (newRev uint64, ok bool, err error)
	// LoadSession reads a session's entry: one registry read; rec nil if
	// there is none.
	LoadSession(ctx context.Context, id string) (rec *sessionrec.Record, owner string, lastActive int64, rev uint64, err error)
	// EndSession removes a session's entry and its stream events.
	EndSession(ctx context.Context, id string) error
	// Watch calls fn (which must not block) with other nodes' registry
	// changes: a session's entry written (its owner, newer activity, the
	// entry's revision), or its end (gone).
	Watch(fn func(id, owner string, lastActive int64, rev uint64, gone bool)) error
	// NodeAlive reports whether a node holds its lease; TagAlive the same
	// for the node holding a tag.
	NodeAlive(ctx context.Context, node string) bool
	TagAlive(ctx context.Context, tag uint32) bool
	// Publish stores a stream event; done gets the outcome, in publishing
	// order, and must not block.
	Publish(id string, ev *sessionrec.Published, done func(error))
	// Tail is a stream's last stored event (nil if none); Streams lists
	// the streams of a session that have stored events.
	Tail(ctx context.Context, id string, stream uint64) (*sessionrec.Published, error)
	Streams(ctx context.Context, id string) ([]uint64, error)
	// Follow gives fn each stored event of a stream above after, then the
	// new ones as they are stored, until the end marker (given to fn, then
	// nil), ctx's end or an error.
	Follow(ctx context.Context, id string, stream, after uint64, fn func(*sessionrec.Published) error) error
	// SetMark records where the newest connection of a session's stream
	// started; Mark reads it (0 if none).
	SetMark(ctx context.Context, id string, stream, seq uint64) error
	Mark(ctx context.Context, id string, stream uint64) (uint64, error)
	// SetHigh records the highest seq given out in a session's stream and
	// the highest must-deliver seq among them (the stored events age out
	// after the stream retention); High reads them (0, 0 if none).
	SetHigh(ctx context.Context, id string, stream, seq, lastMust uint64) error
	High(ctx context.Context, id string, stream uint64) (seq, lastMust uint64, err error)
	// Handle sets the function answering other nodes' requests; Request
	// sends one to a node and waits for its answer RequestTimeout at most
	// (a handler that may take longer answers within it and hands the
	// rest of its work off).
	Handle(fn func(op string, body []byte) ([]byte, error))
	Request(ctx context.Context, node, op string, body []byte) ([]byte, error)
	RequestTimeout() time.Duration
	// Release hands this node's lease back (a drain's hand-over); Nodes
	// lists the live nodes; Flush waits for the outstanding publishes.
	Release(ctx context.Context) error
	Nodes(ctx context.Context) ([]string, error)
	Flush(ctx context.Context) error
}

// How the gateway uses it (README "Scale-out"):
//
//   - initialize writes the session's registry entry before answering, so
//     the client's next request finds it on any node. A request for a
//     session that is not local reads the entry once and builds the
//     session here: a Streamable HTTP upstream session is re-attached by
//     its id (upstream.Resumer) and served here; a stdio or legacy upstream
//     session exists on its owner only, so its messages are forwarded to
//     the owner over NATS request/reply (forwardSession). A legacy
//     HTTP+SSE client's session is registered when its stream opens and
//     never copied: each of its messages is forwarded whole to the node
//     holding its stream (cluster_legacy.go).
//   - activity is written at most once per activityEvery per session and
//     node, and other nodes raise their copy's last activity from the
//     registry watch, so a session is idle only if idle on every node.
//     Only the owner's idle clock ends a session cluster-wide; other
//     nodes' copies are dropped quietly when idle.
//   - every event stored in a ring is published to JetStream; a reader on
//     the producing node gets it once JetStream acknowledged it, so an
//     event a client saw is never lost with a node. A reader on another
//     node reads a mirror: a ring rebuilt from JetStream, then following
//     it live, with the same event ids and the same resume rule.
//   - the owner pumps the standalone stream; a stream whose producer died
//     is taken over by the session's owner (a live node claims ownership
//     of a session whose owner's lease ran out), resuming the upstream
//     answer by its last event id where the upstream can.
type clusterNode struct {
	c   Cluster
	id  string
	tag uint64 // the node's tag, shifted into the high bits of numbers it gives out

	// activityEvery is how often a session's activity is written.
	activityEvery time.Duration
	// handingOver is set when a drain begins: standalone pumps stop, and
	// the sessions go to other nodes.
	handingOver atomic.Bool
	// legacyHold is how long a request for a forwarded legacy message's
	// answer is held while the message is being handled: half the
	// request timeout (cluster_legacy.go).
	legacyHold time.Duration
	// legacy holds the forwarded legacy messages this node runs.
	legacy legacyRuns

	m clusterMetrics
}

type clusterMetrics struct {
	registryReads, registryWrites, registryErrors atomic.Uint64
	forwards, forwardErrors, forwardedServed      atomic.Uint64 // forwards: those that succeeded
	takeovers, streamTakeovers                    atomic.Uint64
	published, publishErrors                      atomic.Uint64
	mirrors, mirrorGaps                           atomic.Uint64
	remoteEnds                                    atomic.Uint64
}

// tagShift places a node's tag above the stream and call numbers it gives
// out in a session; tags stay below 2^20, so numbers stay below 2^52 and
// survive JSON parsers that read numbers as doubles.
const tagShift = 32

// clusterSession is a session's cluster state (nil in single-node mode).
type clusterSession struct {
	// mu guards the fields below. A leaf.
	mu    sync.Mutex
	owner string
	rev   uint64
	saved int64 // the last activity written
}

// learn takes an owner and revision read from the registry, unless the
// session knows a newer revision already (concurrent reads and writes of
// one node must not bring an older owner back). It returns the owner
// before, and whether it took them.
func (cs *clusterSession) learn(owner string, rev uint64) (was string, took bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	was = cs.owner
	if rev >= cs.rev {
		cs.owner, cs.rev = owner, rev
		return was, true
	}
	return was, false
}

// clusterStream is a stream's cluster state (nil in single-node mode).
type clusterStream struct {
	// acked: events up to it are stored in JetStream and may be handed
	// to a reader on this node. stored gets a signal (one slot, never
	// blocks) when acked rises: a whole answer waits for it (wholeanswer.go),
	// a connection's writer is kicked instead.
	acked    atomic.Uint64
	stored   chan struct{}
	lastMust atomic.Uint64
	calls    []sessionrec.Call
	// upEvent reports the upstream's last event id (the pump's upstream
	// stream); nil if the upstream has none.
	upEvent func() string
	// mirror: the ring is rebuilt from JetStream and followed, for one
	// connection; cancel stops its follower.
	mirror bool
	cancel context.CancelFunc
	// handedOver marks a standalone stream this node produced until its
	// drain handed the session over, or another node claimed the session
	// (demote): its pump stopped and the new owner goes on with the stream
	// in JetStream, so a mirror replaces it (installStream) as it would
	// replace an older mirror, and so does the stream rebuilt by this
	// node's adoptStream should it own the session again.
	handedOver atomic.Bool
	// highSeq and highMust are the high-water mark of a standalone stream
	// this node produces as this node last wrote it to the registry,
	// highAt when (unix ns; 0: never); only the activity loop writes them
	// (saveHighWater).
	highSeq, highMust atomic.Uint64
	highAt            atomic.Int64
}

// replaceable reports whether a local stream gives way to a mirror being
// installed: it is a mirror itself, or this node's standalone stream that
// it handed over. A stream this node produces otherwise stays.
func (cs *clusterStream) replaceable() bool {
	return cs != nil && (cs.mirror || cs.handedOver.Load())
}

// handedOver reports whether st is a standalone stream this node produced
// until it handed the session over: its pump stops.
func (st *stream) handedOver() bool { return st.cs != nil && st.cs.handedOver.Load() }

// readLimit is the highest seq a reader of st may get now.
func (st *stream) readLimit() uint64 {
	if st.cs == nil {
		return math.MaxUint64
	}
	return st.cs.acked.Load()
}

// allReadable reports whether a reader of st may have every event its ring
// holds now: on a cluster node, JetStream acknowledged them all.
func (st *stream) allReadable() bool { return st.readLimit() >= st.ring.LastSeq() }

// storedWait is signalled when more of st's events were stored in
// JetStream; nil (never) outside a cluster.
func (st *stream) storedWait() <-chan struct{} {
	if st.cs == nil {
		return nil
	}
	return st.cs.stored
}

func (s *Server) clustered() bool { return s.clu != nil }

// clusterInit wires the Server into cfg.Cluster (New).
func (s *Server) clusterInit() error {
	c := s.cfg.Cluster
	s.clu = &clusterNode{c: c, id: c.NodeID(), tag: uint64(c.Tag()) << tagShift}
	s.clu.activityEvery = min(max(s.cfg.SessionIdleTimeout/8, 100*time.Millisecond), 30*time.Second)
	s.clu.legacyHold = c.RequestTimeout() / 2
	if s.clu.legacyHold <= 0 {
		s.clu.legacyHold = time.Second
	}
	if err := c.Watch(s.clusterChanged); err != nil {
		return err
	}
	c.Handle(s.clusterRequest)
	if s.registry != nil {
		s.registry.MustRegister(clusterCollector{s})
	}
	s.goOwned(s.activityLoop)
	return nil
}

func (s *Server) rctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, 10*time.Second)
}

// clusterRecord is sess as a registry record (no streams).
func (s *Server) clusterRecord(sess *session) *sessionrec.Record {
	if sess.legacy != nil {
		// A legacy HTTP+SSE session cannot move (its stream is on this
		// node): its entry only names its owner and principal, so that
		// another node forwards its messages here (cluster_legacy.go).
		return &sessionrec.Record{ID: sess.id, Principal: sess.principal, Namespaced: true, Owner: sess.owner, Created: sess.created,
			LastActive: sess.lastActive.Load(), LegacyClient: true}
	}
	rec := &sessionrec.Record{ID: sess.id, Principal: sess.principal, Namespaced: true, Owner: sess.owner, Version: sess.version,
		Created: sess.created, LastActive: sess.lastActive.Load()}
	if rs := sess.restart; rs != nil {
		rec.Initialize, rec.Capabilities = rs.init, rs.caps
		sess.mu.Lock()
		rec.LogLevel = rs.logLevel
		for uri := range rs.subs {
			rec.Subscriptions = append(rec.Subscriptions, uri)
		}
		sess.mu.Unlock()
	}
	up := sess.up
	switch u := up.(type) {
	case *reinitSession:
		rec.Upstream = sessionrec.Upstream{Kind: u.kind, Version: u.version}
		up = u.current()
	case *forwardSession:
		rec.Upstream = u.rec
		up = nil
	}
	if up != nil {
		rec.Upstream = sessionrec.Upstream{Kind: kindOf(up), ID: up.ID(), Version: up.Version(), Resumable: s.resumer != nil && kindOf(up) == upstream.KindHTTP}
	}
	return rec
}

// clusterCreated registers a new session (initialize) before it is
// answered; an error refuses the initialize.
func (s *Server) clusterCreated(sess *session) error {
	sess.nextStream = s.clu.tag
	sess.nextUp = s.clu.tag
	sess.cluster = &clusterSession{owner: s.clu.id, saved: sess.lastActive.Load()}
	ctx, cancel := s.rctx()
	defer cancel()
	rev, ok, err := s.clu.c.SaveSession(ctx, s.clusterRecord(sess), s.clu.id, sess.lastActive.Load(), 0)
	s.clu.m.registryWrites.Add(1)
	if err == nil && !ok {
		err = errors.New("session id taken")
	}
	if err != nil {
		s.clu.m.registryErrors.Add(1)
		return err
	}
	sess.cluster.rev = rev
	return nil
}

// clusterLoad builds a session that is not local from its registry entry
// (one read). It returns nil, nil for a session the registry does not hold.
func (s *Server) clusterLoad(sid string) (*session, error) {
	return s.clusterLoadTries(sid, 3)
}

// clusterLoadTries is clusterLoad, claiming a session whose owner is gone
// at most tries times.
func (s *Server) clusterLoadTries(sid string, tries int) (*session, error) {
	ctx, cancel := s.rctx()
	defer cancel()
	rec, owner, lastActive, rev, err := s.clu.c.LoadSession(ctx, sid)
	s.clu.m.registryReads.Add(1)
	if err != nil {
		s.clu.m.registryErrors.Add(1)
		return nil, err
	}
	if rec == nil || rec.LegacyClient || !versionSupported([]byte(rec.Version)) {
		// A legacy HTTP+SSE session has no copy on another node: its
		// messages are forwarded to its owner (cluster_legacy.go), and on
		// /mcp it does not exist, as on its own node.
		return nil, nil
	}
	sess := s.sessionFromRecord(rec, 2)
	scancel := sess.cancel
	sess.nextUp, sess.nextStream = s.clu.tag, s.clu.tag
	sess.cluster = &clusterSession{owner: owner, rev: rev, saved: lastActive}
	sess.lastActive.Store(max(lastActive, rec.LastActive, s.clock.Now()))
	switch {
	case rec.Upstream.Resumable && s.resumer != nil:
		up, err := s.resumer.Resume(rec.Upstream.ID, rec.Upstream.Version)
		if err != nil {
			scancel()
			return nil, err
		}
		sess.up = up
	case owner != s.clu.id && s.clu.c.NodeAlive(ctx, owner):
		sess.up = &forwardSession{srv: s, sess: sess, rec: rec.Upstream}
	case len(rec.Initialize) > 0:
		// The owner is gone: claim the session and re-initialize its
		// upstream side from the cached initialize on first use. A node
		// that could not store the session leaves it to one that can:
		// an owner that does not hold the session would make every node
		// forwarding to it end the session.
		if s.store.Len() >= s.cfg.MaxSessions ||
			(s.cfg.MaxSessionsPerPrincipal > 0 && s.store.OwnerCount(sess.owner) >= s.cfg.MaxSessionsPerPrincipal) {
			scancel()
			return nil, errors.New("cluster: no room here for a session whose owner is gone")
		}
		sess.up = &reinitSession{srv: s, sess: sess, init: rec.Initialize, kind: rec.Upstream.Kind, version: rec.Upstream.Version}
		if !s.claim(ctx, sess) {
			scancel()
			return s.clusterLoadAgain(sid, tries-1)
		}
	default:
		scancel()
		return nil, errNoUpstream
	}
	if err := s.storeSession(sess); err != nil {
		scancel()
		if cur, ok := s.store.Get(sid); ok {
			return cur, nil // built concurrently by another request
		}
		return nil, err
	}
	return sess, nil
}

// clusterLoadAgain is clusterLoad after losing a claim: another node may
// own the session now, or the entry changed otherwise (another node's
// activity write, a registry error) and the owner is still gone: the
// entry is read again and, while tries remain, claimed again. A session
// that still exists is never answered as unknown: without tries left,
// the error makes the request a 503 the client retries.
func (s *Server) clusterLoadAgain(sid string, tries int) (*session, error) {
	if cur, ok := s.store.Get(sid); ok {
		return cur, nil
	}
	if tries <= 0 {
		return nil, errors.New("cluster: the session's owner is gone and claiming it failed")
	}
	return s.clusterLoadTries(sid, tries)
}

// isOwner reports whether this node owns sess.
func (s *Server) isOwner(sess *session) bool {
	cs := sess.cluster
	if cs == nil {
		return true
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.owner == s.clu.id
}

func (s *Server) ownerOf(sess *session) string {
	cs := sess.cluster
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.owner
}

// claim makes this node the session's owner in the registry, from the
// revision it read; false if another node changed the entry first.
func (s *Server) claim(ctx context.Context, sess *session) bool {
	cs := sess.cluster
	cs.mu.Lock()
	rev := cs.rev
	cs.mu.Unlock()
	newRev, ok, err := s.clu.c.SaveSession(ctx, s.clusterRecord(sess), s.clu.id, sess.lastActive.Load(), rev)
	s.clu.m.registryWrites.Add(1)
	if err != nil || !ok {
		if err != nil {
			s.clu.m.registryErrors.Add(1)
			return false
		}
		// Another node changed the entry first: learn who owns it now.
		if rec, cur, _, curRev, err := s.clu.c.LoadSession(ctx, sess.id); err == nil && rec != nil {
			s.clu.m.registryReads.Add(1)
			s.learnOwner(sess, cur, curRev)
		}
		return false
	}
	cs.mu.Lock()
	cs.owner, cs.rev = s.clu.id, newRev
	cs.mu.Unlock()
	s.clu.m.takeovers.Add(1)
	s.log.Info("cluster: took a session over", "session", sess.id)
	return true
}

// ensureOwner makes sure a live node owns sess: the owner's lease is
// checked, and a session whose owner is gone is claimed. It reports
// whether this node owns it afterwards.
func (s *Server) ensureOwner(ctx context.Context, sess *session) bool {
	owner, claimed := s.takeOwnership(ctx, sess, "")
	if claimed {
		// The owner pumps the standalone stream: at once, so that what the
		// upstream says meanwhile is kept for the client's reconnection.
		s.goOwned(func(context.Context) {
			actx, cancel := s.rctx()
			defer cancel()
			if err := s.adoptStream(actx, sess, 0); err != nil {
				s.log.Warn("cluster: the standalone stream of a session taken over is not pumped", "session", sess.id, "err", err)
			}
		})
	}
	return owner
}

// takeOwnership is ensureOwner for a session that node gone hands over
// (a drain's "claim"): gone gave its lease back before it asked, so it
// counts as gone even while this node's view of the leases, which
// Cluster.NodeAlive may reuse for a moment, still has it alive. Only the
// node named is taken for gone; any other owner's lease is checked.
// claimed reports that this call made this node the owner: the caller
// then adopts the session's standalone stream (once, by one of them).
func (s *Server) takeOwnership(ctx context.Context, sess *session, gone string) (owner, claimed bool) {
	if s.handingOver() {
		return false, false // a draining node gives sessions away, never takes them
	}
	cur := s.ownerOf(sess)
	if cur == s.clu.id {
		return true, false
	}
	if cur != gone && s.clu.c.NodeAlive(ctx, cur) {
		return false, false
	}
	// Read the entry again: another node may have claimed it already.
	rec, now, _, rev, err := s.clu.c.LoadSession(ctx, sess.id)
	s.clu.m.registryReads.Add(1)
	if err != nil || rec == nil {
		return false, false
	}
	s.learnOwner(sess, now, rev)
	if now == s.clu.id {
		return true, false
	}
	if now != cur && now != gone && s.clu.c.NodeAlive(ctx, now) {
		return false, false
	}
	// The owner's settings as it last wrote them: this node's copy saw
	// only the messages sent through it, and the claim writes them.
	sess.takeSettings(rec)
	if !s.claim(ctx, sess) {
		return false, false
	}
	if f, ok := sess.up.(*forwardSession); ok && len(sess.restart.init) > 0 {
		// The child died with its node: re-initialize on first use.
		f.becomeOwner()
	}
	return true, true
}

// takeSettings replaces the settings a re-initialized upstream session
// replays (log level, subscriptions) with a registry record's.
func (sess *session) takeSettings(rec *sessionrec.Record) {
	rs := sess.restart
	if rs == nil {
		return
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	rs.logLevel = rec.LogLevel
	rs.subs = nil
	for _, uri := range rec.Subscriptions {
		if rs.subs == nil {
			rs.subs = make(map[string]struct{}, len(rec.Subscriptions))
		}
		rs.subs[uri] = struct{}{}
	}
}

// clusterEnded is endSession's hook: the registry entry and the stream
// events go when the session ended for good. A copy on a node that does
// not own it only leaves this node when it idles; shutdown keeps it for
// the other nodes; a session another node ended is gone already.
func (s *Server) clusterEnded(sess *session, reason CloseReason) {
	if sess.cluster == nil {
		return
	}
	switch reason {
	case CloseElsewhere:
		return
	case CloseShutdown:
		if sess.legacy == nil {
			return
		}
		// A legacy HTTP+SSE session ends with its stream, which the
		// shutdown ends: no node can serve it afterwards.
	case CloseIdle, CloseMaxAge, CloseEvicted:
		// A copy on a node that does not own the session leaves this
		// node only (expired here, or evicted to make room here).
		if !s.isOwner(sess) {
			return
		}
	}
	s.removeEntry(sess, "cluster: session end not recorded")
}

// removeEntry removes sess's registry entry (and its stream events), and
// logs msg if that fails.
func (s *Server) removeEntry(sess *session, msg string) {
	ctx, cancel := s.rctx()
	defer cancel()
	s.clu.m.registryWrites.Add(1)
	if err := s.clu.c.EndSession(ctx, sess.id); err != nil {
		s.clu.m.registryErrors.Add(1)
		s.log.Warn(msg, "session", sess.id, "err", err)
	}
}

// upstreamEndFor says how a local copy's upstream side ends: a copy this
// node does not own never ends it on expiry (the owner's clock decides).
func (s *Server) upstreamEndFor(sess *session, how upstreamEnd) upstreamEnd {
	if sess.cluster != nil && how == upstreamLater && !s.isOwner(sess) {
		return upstreamGone
	}
	return how
}

// clusterChanged applies another node's registry change (Watch).
func (s *Server) clusterChanged(id, owner string, lastActive int64, rev uint64, gone bool) {
	sess, ok := s.store.Get(id)
	if !ok || sess.cluster == nil {
		return
	}
	if gone {
		s.clu.m.remoteEnds.Add(1)
		// Ended elsewhere: leave without ending the upstream side again,
		// unless it exists here only (this node owns a stdio child or a
		// legacy stream): the node that ended the session cannot reach it
		// once this node dropped the session.
		how := upstreamGone
		if s.isOwner(sess) && !s.clusterRecord(sess).Upstream.Resumable {
			how = upstreamLater
		}
		s.endLater(sess, CloseElsewhere, how)
		return
	}
	for {
		cur := sess.lastActive.Load()
		if lastActive <= cur || sess.lastActive.CompareAndSwap(cur, lastActive) {
			break
		}
	}
	cs := sess.cluster
	cs.mu.Lock()
	if lastActive > cs.saved {
		cs.saved = lastActive // another node wrote it: nothing to write here
	}
	cs.mu.Unlock()
	// The owner as the registry has it now: a copy forwards its next
	// request to a node that claimed the session (not first to the dead
	// owner, which cost the client a 502), and a node whose lease ran out
	// while it lived learns that another node claimed a session it owned.
	s.learnOwner(sess, owner, rev)
}

// learnOwner is clusterSession.learn on this node: a node that owned sess
// and learns that another node owns it now is demoted.
func (s *Server) learnOwner(sess *session, owner string, rev uint64) {
	if was, took := sess.cluster.learn(owner, rev); took && was == s.clu.id && owner != s.clu.id {
		s.demote(sess, owner)
	}
}

// demote makes this node stop acting as the owner of sess, which another
// node claimed: this node's lease ran out while it lived (a NATS partition
// longer than the lease), and the node that claimed the session serves it
// now, from an upstream session of its own where the upstream side cannot
// be re-attached (a second stdio child). The standalone stream this node
// pumped is handed over: its pump stops and its connection is cut, and
// the client resumes it by Last-Event-ID from what JetStream holds, on any
// node. An upstream side that exists on this node only is closed: the
// copy is dropped (the settings stay in the registry, as the owner keeps
// them), so the session's next request here reads the registry and is
// forwarded to the owner, as on any node that does not own it. A copy
// whose upstream session every node re-attaches stays, as on other nodes.
// A draining node hands its sessions over itself. It never blocks.
func (s *Server) demote(sess *session, owner string) {
	if s.handingOver() {
		return
	}
	s.log.Warn("cluster: another node claimed a session this node owned (this node's lease ran out): the session is served there", "session", sess.id, "owner", owner)
	if st := sess.stream(0); st != nil && st.cs != nil && !st.cs.mirror {
		st.cs.handedOver.Store(true)
		st.closeUpstream()
		st.cut(CloseElsewhere)
	}
	if s.clusterRecord(sess).Upstream.Resumable {
		return
	}
	// Ended here at once (no upstream I/O, no registry write: the session
	// lives on with its owner), so that no later request of this node
	// reaches the upstream session of the copy; the reaper closes that.
	how := upstreamOwn
	if f, ok := sess.up.(*forwardSession); ok && f.local.Load() == nil {
		how = upstreamGone // none of its own: its close would end the session on the owner
	}
	s.endSession(context.Background(), sess, CloseElsewhere, how)
}

// activityLoop writes the activity of local sessions that were active (or
// are in use) since it was last written, at most once per activityEvery
// each, so that other nodes do not expire them.
func (s *Server) activityLoop(ctx context.Context) {
	// It ticks at least twice per stream retention, so that a standalone
	// stream's high-water mark is written before its events age out.
	t := time.NewTicker(min(s.clu.activityEvery, max(s.cfg.StreamRetention/2, 10*time.Millisecond)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := s.clock.Now()
		every := int64(s.clu.activityEvery)
		s.store.Range(func(_ string, sess *session) bool {
			cs := sess.cluster
			if cs == nil || ctx.Err() != nil {
				return ctx.Err() == nil
			}
			la := sess.lastActive.Load()
			if sess.busy.Load() > 0 {
				la = now
				sess.touch(now)
			}
			cs.mu.Lock()
			due := la > cs.saved && la-cs.saved >= every
			cs.mu.Unlock()
			if due && !sess.isClosed() {
				s.saveActivity(ctx, sess, la)
			}
			s.saveHighWater(ctx, sess, now)
			return true
		})
	}
}

// saveHighWater writes the high-water mark of the standalone stream this
// node produces for sess (the owner's) when it rose since last written,
// or when its last write is half an idle timeout old (a registry key
// lives for the bucket's TTL after its last write, as the session's
// entry does). The events stream keeps a stream's events for the stream
// retention only: once a quiet stream's events aged out, the node that
// produces the stream next (a takeover, a drain's hand-over) or mirrors
// it goes on from this mark (adoptStream, raise), never giving out again
// an id this node gave out. The activity loop calls it, one tick (at most
// half the stream retention) after the stream moved at the latest.
func (s *Server) saveHighWater(ctx context.Context, sess *session, now int64) {
	if sess.legacy != nil || sess.isClosed() || !s.isOwner(sess) {
		return
	}
	st := sess.stream(0)
	if st == nil || st.cs == nil || st.cs.mirror || st.cs.handedOver.Load() {
		return
	}
	cs := st.cs
	last, must := st.ring.LastSeq(), cs.lastMust.Load()
	refresh := max(int64(s.cfg.SessionIdleTimeout/2), int64(s.clu.activityEvery))
	if last == 0 || (last <= cs.highSeq.Load() && must <= cs.highMust.Load() && now-cs.highAt.Load() < refresh) {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s.clu.m.registryWrites.Add(1)
	if err := s.clu.c.SetHigh(rctx, sess.id, 0, last, min(must, last)); err != nil {
		s.clu.m.registryErrors.Add(1)
		s.log.Debug("cluster: standalone stream's high-water mark not saved", "session", sess.id, "err", err)
		return
	}
	cs.highSeq.Store(last)
	cs.highMust.Store(min(must, last))
	cs.highAt.Store(now)
}

// saveActivity writes sess's entry with its activity; on a conflict it
// reads the entry (learning a new owner) and tries once more.
func (s *Server) saveActivity(ctx context.Context, sess *session, la int64) {
	cs := sess.cluster
	for range 2 {
		cs.mu.Lock()
		owner, rev := cs.owner, cs.rev
		cs.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rec := s.clusterRecord(sess)
		if owner != s.clu.id {
			// A copy: the owner's record stays (the settings it keeps,
			// log level and subscriptions, come through the owner, and a
			// copy only sees the messages sent through its node); only
			// the activity is this node's.
			cur, curOwner, _, curRev, err := s.clu.c.LoadSession(rctx, sess.id)
			s.clu.m.registryReads.Add(1)
			if err != nil {
				cancel()
				s.clu.m.registryErrors.Add(1)
				return
			}
			if cur == nil {
				cancel()
				s.endLater(sess, CloseElsewhere, upstreamGone)
				return
			}
			s.learnOwner(sess, curOwner, curRev)
			rec, owner, rev = cur, curOwner, curRev
		}
		newRev, ok, err := s.clu.c.SaveSession(rctx, rec, owner, la, rev)
		s.clu.m.registryWrites.Add(1)
		if err != nil {
			cancel()
			s.clu.m.registryErrors.Add(1)
			return
		}
		if ok {
			cancel()
			cs.mu.Lock()
			cs.rev, cs.saved = newRev, max(cs.saved, la)
			cs.mu.Unlock()
			return
		}
		rec, cur, curLA, curRev, err := s.clu.c.LoadSession(rctx, sess.id)
		cancel()
		s.clu.m.registryReads.Add(1)
		if err != nil {
			return
		}
		if rec == nil {
			s.endLater(sess, CloseElsewhere, upstreamGone)
			return
		}
		s.learnOwner(sess, cur, curRev)
		cs.mu.Lock()
		cs.saved = max(cs.saved, curLA)
		cs.mu.Unlock()
		if curLA >= la {
			return
		}
	}
}

// published hands an event just stored in st's ring to JetStream; readers
// on this node get it once it is acknowledged.
func (s *Server) published(st *stream, seq uint64, class ringbuf.Class, key uint64, data []byte) {
	cs := st.cs
	if cs == nil || cs.mirror || seq == 0 {
		return
	}
	ev := &sessionrec.Published{Event: sessionrec.Event{Seq: seq, MustDeliver: class == ringbuf.MustDeliver, Key: key, Data: data},
		Stream: st.id, LastMust: cs.lastMust.Load(), Calls: cs.calls}
	if class == ringbuf.MustDeliver {
		for {
			cur := cs.lastMust.Load()
			if seq <= cur || cs.lastMust.CompareAndSwap(cur, seq) {
				break
			}
		}
	}
	if cs.upEvent != nil {
		ev.UpstreamEventID = cs.upEvent()
	}
	s.clu.m.published.Add(1)
	s.clu.c.Publish(st.sess.id, ev, func(err error) { s.acked(st, seq, err) })
}

// acked lets this node's reader of st have the events up to seq.
func (s *Server) acked(st *stream, seq uint64, err error) {
	if err != nil {
		// Served from this node's ring all the same; a reader elsewhere
		// meets a gap (and resumes, or is refused, by the usual rule).
		s.clu.m.publishErrors.Add(1)
	}
	cs := st.cs
	for {
		cur := cs.acked.Load()
		if seq <= cur || cs.acked.CompareAndSwap(cur, seq) {
			break
		}
	}
	select {
	case cs.stored <- struct{}{}:
	default:
	}
	if c := st.conn.Load(); c != nil {
		c.w.kick()
	}
}

// publishEnd stores a finished stream's end marker.
func (s *Server) publishEnd(st *stream) {
	cs := st.cs
	if cs == nil || cs.mirror {
		return
	}
	if st.sess.suspendedForHandover() {
		return // another node continues the stream
	}
	s.clu.c.Publish(st.sess.id, &sessionrec.Published{Event: sessionrec.Event{Seq: st.ring.LastSeq()}, Stream: st.id, End: true}, nil)
}

// suspendedForHandover reports whether the session was suspended by a
// clustered shutdown: its streams are continued by another node.
func (sess *session) suspendedForHandover() bool {
	if sess.cluster == nil {
		return false
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.suspended
}

// newClusterStream gives a new local stream its cluster state: events
// numbered after base (0 for a new stream).
func (s *Server) newClusterStream(st *stream, calls []*call, up upstream.Stream) {
	if s.clu == nil {
		return
	}
	cs := &clusterStream{stored: make(chan struct{}, 1)}
	cs.acked.Store(st.ring.LastSeq())
	for _, c := range calls {
		cs.calls = append(cs.calls, sessionrec.Call{UpID: c.upID, ClientID: c.clientID})
	}
	if e, ok := up.(upstream.EventIDer); ok {
		cs.upEvent = e.LastEventID
	}
	st.cs = cs
}

// clusterGet serves a cluster node's GETs of streams it may not hold: the
// standalone stream (the owner pumps it; another node reads it from
// JetStream) and streams another node produced (resumed by Last-Event-ID:
// a mirror, or the stream taken over when its producer died). A plain GET
// of the standalone stream starts where the stream's newest connection
// started, on whichever node that was (the mark kept in the registry), as
// a single node's plainStart does. It reports whether it answered; false:
// the caller serves the local stream.
func (s *Server) clusterGet(ctx *fasthttp.RequestCtx, sess *session, last []byte) bool {
	var streamID, after uint64
	plain := len(last) == 0
	if !plain {
		var err error
		if streamID, after, err = sse.ParseEventID(last); err != nil {
			return false // the local path answers 400
		}
	}
	rctx, cancel := s.rctx()
	defer cancel()
	if streamID == 0 {
		return s.clusterGetStandalone(ctx, rctx, sess, plain, after, last)
	}
	if st := sess.stream(streamID); st != nil && (st.cs == nil || !st.cs.mirror) {
		return false // this node produces it: the local ring is the fast path
	}
	producerAlive := s.clu.c.TagAlive(rctx, uint32(streamID>>tagShift))
	tail, err := s.clu.c.Tail(rctx, sess.id, streamID)
	if err != nil {
		s.clusterUnavailable(ctx, err)
		return true
	}
	if tail == nil {
		return false // no such stream anywhere: the local path answers 400
	}
	if !producerAlive && !tail.End {
		// Its producer died: the owner takes it over.
		if s.ensureOwner(rctx, sess) {
			if err := s.adoptStream(rctx, sess, streamID); err != nil {
				s.clusterUnavailable(ctx, err)
				return true
			}
			return false
		}
		if _, err := s.clu.c.Request(rctx, s.ownerOf(sess), "adopt", []byte(sess.id+" "+strconv.FormatUint(streamID, 10))); err != nil {
			s.log.Debug("cluster: the owner did not adopt an orphaned stream", "session", sess.id, "stream", streamID, "err", err)
		}
	}
	if _, err := s.mirrorStream(rctx, sess, streamID, tail, after, highWater{}); err != nil {
		s.clusterUnavailable(ctx, err)
		return true
	}
	s.resume(ctx, sess, last)
	return true
}

// clusterGetStandalone serves a GET of the standalone stream.
func (s *Server) clusterGetStandalone(ctx *fasthttp.RequestCtx, rctx context.Context, sess *session, plain bool, after uint64, last []byte) bool {
	from := after
	if plain {
		mark, err := s.clu.c.Mark(rctx, sess.id, 0)
		if err != nil {
			s.clusterUnavailable(ctx, err)
			return true
		}
		from = mark
	}
	var st *stream
	if s.ensureOwner(rctx, sess) {
		// The owner pumps the standalone stream (set up here if needed).
		if err := s.adoptStream(rctx, sess, 0); err != nil {
			s.clusterUnavailable(ctx, err)
			return true
		}
		st = sess.stream(0)
	} else {
		owner := s.ownerOf(sess)
		if _, err := s.clu.c.Request(rctx, owner, "listen", []byte(sess.id)); err != nil {
			s.log.Debug("cluster: the owner did not confirm the standalone stream", "session", sess.id, "owner", owner, "err", err)
		}
		tail, err := s.clu.c.Tail(rctx, sess.id, 0)
		if err != nil {
			s.clusterUnavailable(ctx, err)
			return true
		}
		var high highWater
		if tail == nil || tail.Seq < from {
			// JetStream holds less than the client had (a quiet stream's
			// events aged out): the mirror goes on after what the owner
			// gave out.
			if high, err = s.readHigh(rctx, sess); err != nil {
				s.clusterUnavailable(ctx, err)
				return true
			}
		}
		if st, err = s.mirrorStream(rctx, sess, 0, tail, min(from, tailSeq(tail)), high); err != nil {
			s.clusterUnavailable(ctx, err)
			return true
		}
	}
	if st == nil {
		return false // the session ended meanwhile: the local path answers
	}
	if !plain {
		// Only a resume that will be served moves the mark: one refused
		// (resume: ahead of the stream, or needed events gone) attaches
		// no connection, as a single node's connStart stays.
		if st.servable(after) {
			if err := s.clu.c.SetMark(rctx, sess.id, 0, after); err != nil {
				s.log.Debug("cluster: stream mark not saved", "session", sess.id, "err", err)
			}
		}
		if st.cs != nil && st.cs.mirror {
			s.resume(ctx, sess, last)
			return true
		}
		return false
	}
	start := min(from, st.ring.LastSeq())
	if !st.servable(start) {
		// Needed events are gone: go on after what was delivered, as
		// plainStart does, so events no connection was handed are not
		// skipped; from the end if that is gone too (a mirror's gap).
		if start = min(st.delivered.Load(), st.ring.LastSeq()); !st.servable(start) {
			start = st.ring.LastSeq()
		}
	}
	if start != from {
		if err := s.clu.c.SetMark(rctx, sess.id, 0, start); err != nil {
			s.log.Debug("cluster: stream mark not saved", "session", sess.id, "err", err)
		}
	}
	prefix := []byte(": ok\n\n")
	if versionAtLeast(sess.version, "2025-11-25") {
		prefix = sse.AppendRetry(prefix, s.cfg.RetryHint.Milliseconds())
	}
	s.attachHijacked(ctx, st, start, prefix, true, false)
	return true
}

func tailSeq(p *sessionrec.Published) uint64 {
	if p == nil {
		return 0
	}
	return p.Seq
}

func (s *Server) clusterUnavailable(ctx *fasthttp.RequestCtx, err error) {
	s.log.Warn("cluster: unavailable", "err", err)
	ctx.Response.Header.Set("Retry-After", "1")
	s.fail(ctx, fasthttp.StatusServiceUnavailable, nil, jsonrpc.CodeServerError, "Service Unavailable: the cluster's stream store cannot be reached", nil)
}

// errGap: a mirror met events it cannot have (a gap in JetStream).
var errGap = errors.New("gap in the stream's stored events")

// ringBuilder rebuilds a stream's ring from the events JetStream holds
// above from, up to tail: the same seqs, and a resume from `from` across a
// gone must-deliver event refused as the producer's ring would (an event a
// client still needs is gone if the first one kept above from is not
// from+1 and a must-deliver event came between).
type ringBuilder struct {
	snap     ringbuf.Snapshot
	tail     *sessionrec.Published
	prev     uint64
	calls    []sessionrec.Call
	upEvent  string
	lastMust uint64
	// high is the stream's high-water mark (Cluster.High), if read: the
	// ring goes on after it (raise).
	high highWater
}

// highWater is a stream's high-water mark: the highest seq given out in
// it and the highest must-deliver seq among them (Cluster.SetHigh).
type highWater struct{ seq, lastMust uint64 }

// readHigh reads stream 0's high-water mark of sess.
func (s *Server) readHigh(ctx context.Context, sess *session) (highWater, error) {
	s.clu.m.registryReads.Add(1)
	seq, must, err := s.clu.c.High(ctx, sess.id, 0)
	if err != nil {
		s.clu.m.registryErrors.Add(1)
	}
	return highWater{seq, min(must, seq)}, err
}

// raise makes the ring go on after the high-water mark when JetStream
// holds no event that high (a quiet stream's events aged out after the
// stream retention; the newest were not stored), so that no id given out
// is given out again (rule 26): the ring then holds no event, and a
// resume from before the mark is served as a single node serves one from
// before events its ring evicted: the gone droppable events are skipped,
// and it is refused (400, rule 28) when a must-deliver one is gone (the
// highest known: the mark's, or one of the events dropped here).
func (b *ringBuilder) raise() {
	hi := b.high.seq
	if hi <= b.snap.Last {
		return
	}
	lost := max(b.snap.Lost, b.lastMust, b.high.lastMust)
	for _, e := range b.snap.Events {
		if e.Class == ringbuf.MustDeliver {
			lost = max(lost, e.Seq)
		}
	}
	if t := b.tail; t != nil && t.MustDeliver && !t.End {
		lost = max(lost, t.Seq)
	}
	b.snap.Events = nil
	b.snap.Last, b.snap.Lost = hi, lost
	b.lastMust, b.prev = lost, max(b.prev, hi)
}

func newRingBuilder(tail *sessionrec.Published, from uint64) *ringBuilder {
	b := &ringBuilder{tail: tail, prev: from}
	if tail != nil {
		b.snap.Last, b.snap.Closed, b.lastMust = tail.Seq, tail.End, tail.LastMust
	}
	return b
}

// complete reports whether the events up to the tail are in.
func (b *ringBuilder) complete() bool {
	return b.tail == nil || (!b.tail.End && b.prev >= b.tail.Seq)
}

// add takes the next stored event; it reports whether the ring is
// complete (the tail reached, or the end marker).
func (b *ringBuilder) add(p *sessionrec.Published) bool {
	if p.End {
		b.snap.Closed = true
		return true
	}
	if p.Seq != b.prev+1 {
		b.snap.Events = b.snap.Events[:0] // keep the run after a gap
		if p.LastMust > b.prev {
			// Gone events, a must-deliver one among them: a reader from
			// before here is refused.
			b.snap.Lost = p.Seq - 1
		}
	}
	b.prev = p.Seq
	class, key := ringbuf.Droppable, p.Key
	if p.MustDeliver {
		class, key = ringbuf.MustDeliver, 0
		b.lastMust = p.Seq
	}
	b.snap.Events = append(b.snap.Events, ringbuf.Event{Seq: p.Seq, Class: class, Key: key, Data: p.Data})
	b.calls, b.upEvent = p.Calls, p.UpstreamEventID
	b.snap.Last = max(b.snap.Last, p.Seq)
	return !b.tail.End && p.Seq >= b.tail.Seq
}

// ring builds the ring: everything in it counts as delivered (the
// producer's own readers are served by the producer).
func (s *Server) builtRing(b *ringBuilder) (*ringbuf.Ring, error) {
	b.raise()
	b.snap.Delivered = b.snap.Last
	return ringbuf.Restore(ringbuf.Config{Capacity: s.cfg.RingSize, MaxBytes: s.cfg.RingBytes, Policy: s.cfg.DropPolicy}, b.snap)
}

// errStop ends a Follow on purpose.
var errStop = errors.New("stop")

// loadRing rebuilds a stream's ring from JetStream (ringBuilder), going
// on after its high-water mark high if that is higher.
func (s *Server) loadRing(ctx context.Context, sess *session, id uint64, tail *sessionrec.Published, from uint64, high highWater) (*ringbuf.Ring, *ringBuilder, error) {
	b := newRingBuilder(tail, from)
	b.high = high
	if tail != nil && (tail.Seq > from || tail.End) {
		err := s.clu.c.Follow(ctx, sess.id, id, from, func(p *sessionrec.Published) error {
			if b.add(p) {
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return nil, nil, err
		}
	}
	ring, err := s.builtRing(b)
	return ring, b, err
}

// installStream puts st into sess under its id, replacing a mirror; it
// returns the stream that is there afterwards (an existing local one
// wins) and whether st was installed.
func (sess *session) installStream(st *stream) (*stream, bool) {
	sess.mu.Lock()
	old := sess.streams.get(st.id)
	if sess.closed || (old != nil && !old.cs.replaceable()) {
		sess.mu.Unlock()
		return old, false
	}
	sess.addStreamLocked(st)
	if st.id != 0 && st.finishedAt.Load() != 0 {
		sess.addFinishedLocked(st.id)
	}
	sess.mu.Unlock()
	if old != nil {
		if old.cs.cancel != nil {
			old.cs.cancel() // a mirror's follower
		}
		old.cut(CloseReplaced)
	}
	return st, true
}

// mirrorStream builds a mirror of a stream produced elsewhere, holding its
// events above from (after high, if that is higher: raise), and keeps
// following it: one JetStream consumer reads the stored events (the ring
// is built and installed once the tail is reached) and then the new ones
// as they are stored.
func (s *Server) mirrorStream(ctx context.Context, sess *session, id uint64, tail *sessionrec.Published, from uint64, high highWater) (*stream, error) {
	fctx, cancel := context.WithCancel(sess.context())
	type built struct {
		st  *stream
		err error
	}
	ready := make(chan built, 1)
	b := newRingBuilder(tail, from)
	b.high = high
	var stp atomic.Pointer[stream] // the mirror once installed
	// install builds the ring and installs the mirror; errStop with a
	// stream: another local stream won.
	install := func() (*stream, error) {
		ring, err := s.builtRing(b)
		if err != nil {
			return nil, err
		}
		st := newStream(id, sess, ring)
		// Fed by its follower only: never by a standalone pump of this
		// node (the owner's pump feeds JetStream).
		st.pumping.Store(true)
		st.cs = &clusterStream{mirror: true, cancel: cancel}
		st.cs.acked.Store(math.MaxUint64)
		if ring.Closed() {
			st.finishedAt.Store(s.clock.Now())
		}
		cur, ok := sess.installStream(st)
		if !ok {
			if cur == nil {
				return nil, errors.New("session ended")
			}
			return cur, errStop
		}
		s.clu.m.mirrors.Add(1)
		stp.Store(st)
		return st, nil
	}
	if b.complete() || (tail != nil && tail.Seq <= from && !tail.End) {
		st, err := install()
		if err != nil {
			cancel()
			if errors.Is(err, errStop) {
				return st, nil
			}
			return nil, err
		}
		if st.ring.Closed() {
			cancel()
			return st, nil
		}
		ready <- built{st: st}
	}
	var lastEvent atomic.Int64
	lastEvent.Store(time.Now().UnixNano())
	done := make(chan error, 1)
	follow := func(context.Context) {
		done <- s.clu.c.Follow(fctx, sess.id, id, from, func(p *sessionrec.Published) error {
			lastEvent.Store(time.Now().UnixNano())
			st := stp.Load()
			if st == nil { // still building
				if !b.add(p) {
					return nil
				}
				st, err := install()
				ready <- built{st: st, err: err}
				if err != nil || st.ring.Closed() {
					return errStop
				}
				return nil
			}
			return s.mirrorPush(fctx, st, p)
		})
	}
	if !s.goOwned(follow) {
		cancel()
		return nil, errors.New("shutting down")
	}
	var asked string // the owner that confirmed the standalone stream
	if id == 0 {
		asked = s.ownerOf(sess)
	}
	if !s.goOwned(func(context.Context) { s.watchMirror(fctx, sess, id, asked, &lastEvent, done, stp.Load) }) {
		cancel()
	}
	select {
	case r := <-ready:
		if r.err != nil {
			cancel()
			if errors.Is(r.err, errStop) {
				return r.st, nil
			}
			return nil, r.err
		}
		return r.st, nil
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	}
}

// mirrorPush stores a followed event in a mirror's ring, under the seq it
// has (a gap ends the mirror: the client's resume builds it anew).
func (s *Server) mirrorPush(ctx context.Context, st *stream, p *sessionrec.Published) error {
	if st.id == 0 {
	}
	if p.End {
		s.finishStream(st)
		return errStop
	}
	if p.Seq <= st.ring.LastSeq() {
		return nil // stored twice (an update coalesced in the producer's ring)
	}
	if p.Seq != st.ring.LastSeq()+1 {
		return errGap
	}
	for {
		_, _, err := st.ring.TryPushMust(p.Data)
		if err == nil {
			st.notify()
			return nil
		}
		if !errors.Is(err, ringbuf.ErrNoRoom) {
			return err
		}
		select {
		case <-st.ring.Room():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// watchMirror ends a mirror whose follower failed (a gap, JetStream) or
// whose producer died (no events for a while and its lease gone): the
// connection is cut, and the client's resume builds the stream anew,
// taking it over if its producer died.
func (s *Server) watchMirror(ctx context.Context, sess *session, id uint64, asked string, lastEvent *atomic.Int64, done <-chan error, cur func() *stream) {
	check := time.NewTicker(time.Second)
	defer check.Stop()
	cut := func() {
		if st := sess.streamIfMirror(id); st != nil {
			st.cut(CloseProtocolError)
		}
	}
	for {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, errStop) && ctx.Err() == nil {
				s.clu.m.mirrorGaps.Add(1)
				s.log.Debug("cluster: mirror ends", "session", sess.id, "stream", id, "err", err)
				cut()
			}
			return
		case <-ctx.Done():
			<-done
			return
		case <-check.C:
			if time.Since(time.Unix(0, lastEvent.Load())) < 2*time.Second {
				continue
			}
			if st := cur(); st != nil && st.ring.Closed() {
				continue
			}
			rctx, cancel := s.rctx()
			var alive bool
			if id == 0 {
				owner := s.ownerOf(sess)
				alive = s.clu.c.NodeAlive(rctx, owner)
				if alive && owner != asked && owner != s.clu.id {
					// Another node owns the session now: make sure it pumps
					// the standalone stream.
					if _, err := s.clu.c.Request(rctx, owner, "listen", []byte(sess.id)); err == nil {
						asked = owner
					}
				}
			} else {
				alive = s.clu.c.TagAlive(rctx, uint32(id>>tagShift))
			}
			cancel()
			if !alive {
				s.clu.m.mirrorGaps.Add(1)
				cut()
				if st := cur(); st != nil && st.cs != nil {
					st.cs.cancel()
				}
				<-done
				return
			}
			lastEvent.Store(time.Now().UnixNano())
		}
	}
}

// streamIfMirror returns stream id if it is a mirror.
func (sess *session) streamIfMirror(id uint64) *stream {
	st := sess.stream(id)
	if st == nil || st.cs == nil || !st.cs.mirror {
		return nil
	}
	return st
}

// mirrorDetached drops a mirror whose connection went: the next
// connection builds it anew from JetStream.
func (s *Server) mirrorDetached(st *stream, c *clientConn) {
	if st.cs == nil || !st.cs.mirror || st.conn.Load() != nil {
		return
	}
	st.cs.cancel()
	sess := st.sess
	sess.mu.Lock()
	if sess.streams.get(st.id) == st && st.conn.Load() == nil {
		sess.deleteStreamLocked(st.id)
		if st.id != 0 && st.finishedAt.Load() != 0 {
			sess.dropFinishedLocked(st.id)
		}
	}
	sess.mu.Unlock()
}

// adoptStream makes this node (the session's owner) the producer of a
// stream whose producer died, or of the standalone stream: the ring is
// rebuilt from JetStream, and the upstream side is picked up again (the
// standalone pump; an answer resumed upstream by its last event id, or
// answered with an error where the upstream cannot resume it).
func (s *Server) adoptStream(ctx context.Context, sess *session, id uint64) error {
	if st := sess.stream(id); st != nil && !st.cs.replaceable() {
		if id == 0 {
			s.ensureStandalonePump(sess, st)
		}
		return nil
	}
	tail, err := s.clu.c.Tail(ctx, sess.id, id)
	if err != nil {
		return err
	}
	if id != 0 && (tail == nil || tail.End) {
		return nil // nothing to continue: readers mirror it
	}
	var high highWater
	if id == 0 {
		// The ids go on after those given out, whatever aged out of
		// JetStream (saveHighWater).
		if high, err = s.readHigh(ctx, sess); err != nil {
			return err
		}
	}
	ring, b, err := s.loadRing(ctx, sess, id, tail, 0, high)
	if err != nil {
		return err
	}
	calls, upEvent, lastMust := b.calls, b.upEvent, b.lastMust
	st := newStream(id, sess, ring)
	cs := &clusterStream{}
	cs.acked.Store(ring.LastSeq())
	cs.lastMust.Store(lastMust)
	cs.calls = calls
	st.cs = cs
	if id == 0 {
		// The upstream's standalone stream resumes after the last event
		// stored (an upstream that can resume replays what the node
		// before read but did not store, or sent while no node listened),
		// and each event stored carries where the upstream stood.
		if upEvent != "" {
			st.upLastID.Store(&upEvent)
		}
		cs.upEvent = st.upstreamLastID
		if cur, ok := sess.installStream(st); !ok {
			if cur == nil {
				return errors.New("session ended")
			}
			st = cur
		}
		s.ensureStandalonePump(sess, st)
		return nil
	}
	s.clu.m.streamTakeovers.Add(1)
	sess.mu.Lock()
	if sess.nextStream < id && id>>tagShift == s.clu.tag>>tagShift {
		sess.nextStream = id
	}
	sess.livePost.Add(1)
	sess.mu.Unlock()
	if _, ok := sess.installStream(st); !ok {
		sess.livePost.Add(-1)
		return nil
	}
	pending := make([]*call, 0, len(calls))
	for _, c := range calls {
		pending = append(pending, &call{clientID: c.ClientID, upID: c.UpID})
	}
	var up upstream.Stream
	if r, ok := sess.up.(upstream.StreamResumer); ok && upEvent != "" {
		up, err = r.ResumeStream(ctx, upEvent)
		if err != nil {
			s.log.Warn("cluster: an orphaned answer cannot be resumed upstream", "session", sess.id, "stream", id, "err", err)
		}
	}
	if up == nil {
		// Nothing to resume from: the calls get an error, the stream ends.
		for _, c := range pending {
			e := jsonrpc.AppendError(nil, c.clientID, jsonrpc.CodeInternalError,
				"the gateway node serving this request failed and the upstream cannot resume its answer; the request may or may not have been carried out", nil)
			if seq, _, perr := st.ring.Push(ringbuf.MustDeliver, 0, e); perr == nil {
				s.published(st, seq, ringbuf.MustDeliver, 0, e)
			}
		}
		s.finishStream(st)
		return nil
	}
	if e, ok := up.(upstream.EventIDer); ok {
		cs.upEvent = e.LastEventID
	}
	st.setUpstream(up)
	sess.busy.Add(1)
	s.log.Info("cluster: took over an answer stream", "session", sess.id, "stream", id, "after", ring.LastSeq())
	if !s.goOwned(func(context.Context) { s.pumpAnswer(sess, st, up, pending, pendingCalls{}) }) {
		sess.busy.Add(-1)
		_ = up.Close()
		s.finishStream(st)
	}
	return nil
}

// clusterRequest answers another node's request (Cluster.Handle).
func (s *Server) clusterRequest(op string, body []byte) ([]byte, error) {
	if s.handingOver() && op != "send" && op != "end" && op != "legacy" && op != "legacywait" {
		return nil, errors.New("draining")
	}
	switch op {
	case "listen":
		sess, ok := s.store.Get(string(body))
		if !ok {
			loaded, err := s.clusterLoad(string(body))
			if err != nil || loaded == nil {
				return nil, errors.New("no such session")
			}
			sess = loaded
		}
		ctx, cancel := s.rctx()
		defer cancel()
		if !s.ensureOwner(ctx, sess) {
			return nil, errors.New("not the owner")
		}
		return nil, s.adoptStream(ctx, sess, 0)
	case "adopt":
		sid, n, _ := cutString(string(body))
		id, err := strconv.ParseUint(strings.TrimSuffix(n, " handover"), 10, 64)
		if err != nil {
			return nil, errors.New("bad stream")
		}
		sess, ok := s.store.Get(sid)
		if !ok {
			return nil, errors.New("no such session")
		}
		ctx, cancel := s.rctx()
		defer cancel()
		if !s.ensureOwner(ctx, sess) {
			return nil, errors.New("not the owner")
		}
		handover := strings.HasSuffix(n, " handover") // its producer gave it up
		if handover {
			id, _ = strconv.ParseUint(strings.TrimSuffix(n, " handover"), 10, 64)
		}
		if !handover && s.clu.c.TagAlive(ctx, uint32(id>>tagShift)) && id>>tagShift != s.clu.tag>>tagShift {
			return nil, errors.New("its producer is alive")
		}
		return nil, s.adoptStream(ctx, sess, id)
	case "claim":
		sid, from, _ := cutString(string(body))
		return nil, s.claimHandedOver(sid, from)
	case "send", "end":
		return s.serveForwarded(op, body)
	case "legacy":
		return s.serveLegacyMessage(body)
	case "legacywait":
		return s.serveLegacyWait(body)
	}
	return nil, errors.New("unknown op " + op)
}

func cutString(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// resumePriming starts a resumed connection (of a call's stream, or any on a
// cluster node) with the resume position as an event id (empty data, like
// the priming event of 2025-11-25): a connection that ends before its first
// event (cut, or a node took the stream over meanwhile) still gives the
// client an id to resume from, where the Go SDK would otherwise give the
// call up.
func resumePriming(dst []byte, stream, seq uint64) []byte {
	dst = append(dst, "id: "...)
	dst = sse.AppendEventID(dst, stream, seq)
	return append(dst, "\ndata: \n\n"...)
}

// A clustered node's shutdown hands its sessions over before its streams
// close (Shutdown calls these):
//
//   - clusterDrainStart, when the drain begins: the node's lease is handed
//     back, its standalone pumps stop, and each session it owned is
//     claimed by a live node (a "claim" request, spread over the live
//     nodes), which pumps the standalone stream from then on; the drain
//     then ends this node's connections with a retry hint, and the clients
//     reconnect to other nodes (the balancer's readiness check sees this
//     node draining) and resume there;
//   - clusterHandOverStreams, once every pump stopped: the outstanding
//     events are flushed to JetStream, and each answer still unfinished is
//     handed to its session's owner ("adopt ... handover"), which resumes
//     it upstream by its last event id.
//
// Sessions stay in the registry; nothing is ended upstream.
func (s *Server) clusterDrainStart(ctx context.Context) {
	if s.clu == nil {
		return
	}
	s.clu.handingOver.Store(true)
	if err := s.clu.c.Release(ctx); err != nil {
		s.log.Warn("cluster: lease not released", "err", err)
	}
	var owned []*session
	s.store.Range(func(_ string, sess *session) bool {
		// A legacy HTTP+SSE session cannot be handed over: it ends with
		// its stream, which the drain ends.
		if sess.cluster != nil && sess.legacy == nil && s.isOwner(sess) {
			owned = append(owned, sess)
		}
		return true
	})
	for _, sess := range owned {
		if st := sess.stream(0); st != nil && st.cs != nil && !st.cs.mirror {
			// Its pump sees handingOver and stops; a client that comes
			// back here meanwhile gets a mirror of what the new owner
			// stores, not this stream, which no longer grows.
			st.cs.handedOver.Store(true)
			st.closeUpstream()
		}
	}
	nodes, err := s.clu.c.Nodes(ctx)
	if err != nil {
		s.log.Warn("cluster: no live node to hand the sessions to", "err", err)
		return
	}
	peers := nodes[:0]
	for _, n := range nodes {
		if n != s.clu.id {
			peers = append(peers, n)
		}
	}
	if len(peers) == 0 {
		s.log.Warn("cluster: no live node to hand the sessions to: they are claimed when their clients come back")
		return
	}
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var handed atomic.Int64
	for i, sess := range owned {
		if ctx.Err() != nil {
			break
		}
		peer := peers[i%len(peers)]
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			// The claim names this node: its lease is given back, whatever
			// the peer's cached view of the leases says.
			if _, err := s.clu.c.Request(ctx, peer, "claim", []byte(sess.id+" "+s.clu.id)); err != nil {
				s.log.Debug("cluster: session not handed over", "session", sess.id, "to", peer, "err", err)
				return
			}
			handed.Add(1)
			if rec, cur, _, rev, err := s.clu.c.LoadSession(ctx, sess.id); err == nil && rec != nil {
				sess.cluster.learn(cur, rev)
			}
		}()
	}
	wg.Wait()
	s.log.Info("cluster: sessions handed over", "sessions", handed.Load(), "of", len(owned), "to", len(peers))
}

// claimHandedOver makes this node own a session the draining node from
// hands over, and pump its standalone stream.
func (s *Server) claimHandedOver(sid, from string) error {
	sess, ok := s.store.Get(sid)
	if !ok {
		loaded, err := s.clusterLoad(sid)
		if err != nil {
			return err
		}
		if loaded == nil {
			return errors.New("no such session")
		}
		sess = loaded
	}
	ctx, cancel := s.rctx()
	defer cancel()
	if owner, _ := s.takeOwnership(ctx, sess, from); !owner {
		return errors.New("owned by another live node")
	}
	// Adopted here whether this call claimed it or the node owned it
	// already: the draining node learns that the stream is pumped.
	return s.adoptStream(ctx, sess, 0)
}

// clusterHandOverStreams hands the unfinished answers this node produced
// to their sessions' owners, once every pump stopped (Shutdown).
func (s *Server) clusterHandOverStreams(ctx context.Context) {
	if s.clu == nil {
		return
	}
	if err := s.clu.c.Flush(ctx); err != nil {
		s.log.Warn("cluster: events not all stored before the hand-over", "err", err)
	}
	type orphan struct {
		sess *session
		id   uint64
	}
	var orphans []orphan
	s.store.Range(func(_ string, sess *session) bool {
		if sess.cluster == nil {
			return true
		}
		sess.mu.Lock()
		for id, st := range sess.streams.all() {
			if id != 0 && st.cs != nil && !st.cs.mirror && st.finishedAt.Load() == 0 {
				orphans = append(orphans, orphan{sess, id})
			}
		}
		sess.mu.Unlock()
		return true
	})
	handed := 0
	for _, o := range orphans {
		owner := s.ownerOf(o.sess)
		if owner == s.clu.id {
			continue // nobody took the session: its clients' resumes claim it
		}
		body := o.sess.id + " " + strconv.FormatUint(o.id, 10) + " handover"
		if _, err := s.clu.c.Request(ctx, owner, "adopt", []byte(body)); err != nil {
			s.log.Warn("cluster: an answer not handed over: it is taken over when this node's lease runs out", "session", o.sess.id, "stream", o.id, "err", err)
			continue
		}
		handed++
	}
	if len(orphans) > 0 {
		s.log.Info("cluster: answers handed over", "answers", handed, "of", len(orphans))
	}
}

// handingOver reports whether a clustered node's drain began: its
// standalone pumps stop (another node pumps them).
func (s *Server) handingOver() bool { return s.clu != nil && s.clu.handingOver.Load() }

// endLater ends sess on an owned goroutine (the caller must not wait: a
// registry watcher, a request handler of another node); during shutdown,
// which ends or keeps every session itself, it does nothing.
func (s *Server) endLater(sess *session, reason CloseReason, how upstreamEnd) {
	s.goOwned(func(context.Context) { s.endSession(context.Background(), sess, reason, how) })
}
