package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/puzpuzpuz/xsync/v3"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// session is one client session. Its identity fields are set before it is
// stored and never change; the rest is atomics or guarded by mu.
type session struct {
	id        string
	version   string // negotiated protocol version ("" for a legacy session: see protocolVersion)
	principal string
	owner     string // what the per-principal session cap counts: the principal, or an anonymous client's address
	up        upstream.Session
	created   int64 // unix ns
	// legacy is set for a session of the legacy HTTP+SSE transport
	// (legacysse.go), nil for a Streamable HTTP one.
	legacy *legacyState

	lastActive atomic.Int64 // unix ns from the coarse clock
	busy       atomic.Int32 // calls in flight plus attached readers: pauses the idle clock

	// life is the session's context (context, cancel): it ends when the
	// session closes; pumps watch it.
	life sessionLife

	// livePost counts unfinished POST answer streams.
	livePost atomic.Int32
	// nstreams is len(streams), stored under mu after every change: the
	// sweeper skips a session without streams without taking mu.
	nstreams atomic.Int32
	// withStreams is the Server's set of sessions with streams for this
	// session's shard (Server.streamSet): the session is in it while it is
	// open and has streams. nil only in tests that build sessions by hand.
	withStreams *xsync.MapOf[*session, struct{}]

	// mu guards streams, nextStream, finished, the calls in flight,
	// closed and suspended.
	mu         sync.Mutex
	streams    streamTable
	nextStream uint64
	// finished holds the ids of the finished POST answer streams still in
	// streams, ascending: pruneFinishedLocked takes the oldest from the
	// front instead of walking every stream on each call's end. Made with
	// the first finished stream (a pointer: idle sessions stay small).
	finished *[]uint64
	inflight callTable // calls in flight, by the client's raw id and by upstream id
	// upTokens counts the calls in flight whose progress token went
	// upstream rewritten (call.upToken): without one, progress passes
	// with no lookup (progressOf).
	upTokens atomic.Int32
	// cancelledCalls counts the calls in flight the client cancelled:
	// without one, a call stream's progress needs no liveToken lookup.
	cancelledCalls atomic.Int32
	nextUp         uint64 // the last upstream id given to a call
	closed         bool
	// suspended is set when a shutdown keeps the session for a restart
	// (Config.StateFile): its calls cut short are told so, and its upstream
	// side is not ended.
	suspended bool
	// closeReason is why the session closed, set with closed.
	closeReason CloseReason
	// ephemeral marks the one-request session of a stateless request: in
	// no shard, never counted as a session, ended with its answer.
	ephemeral bool
	// listen marks the ephemeral session of a subscriptions/listen, which
	// a drain ends; listenEnded is set once the gateway ended it (drain.go):
	// its end is then the listen's complete response, not an error.
	listen      bool
	listenEnded atomic.Bool

	// restart is what re-initializing the upstream side after a restart
	// takes (state.go, reinit.go); nil without Config.StateFile, so other
	// sessions do not pay for it. Set before the session is stored.
	restart *restartState

	// cluster is the session's registry state on a cluster node
	// (cluster.go); nil on a single node. Set before the session is stored.
	cluster *clusterSession
}

// sessionLife holds a session's context (lifeCtx), made when first asked
// for: most sessions never run anything that watches it (a pump, a relayed
// stream). It is not derived from the server's context: a child would put
// every session in one map under the server context's mutex, taken by
// every create and close. Shutdown cancels the sessions itself
// (cancelSessions).
type sessionLife struct {
	made atomic.Pointer[lifeCtx]
}

// endedLife is the context of every session that ended before anything
// asked for its context.
var endedLife = func() *lifeCtx {
	c := &lifeCtx{done: closedDone}
	c.ended.Store(true)
	return c
}()

// context is the session's context: done once the session is cancelled,
// before or after this call.
func (s *session) context() context.Context {
	if c := s.life.made.Load(); c != nil {
		return c
	}
	if c := new(lifeCtx); s.life.made.CompareAndSwap(nil, c) {
		return c
	}
	return s.life.made.Load()
}

// cancel ends the session's context, made or not yet. Idempotent.
func (s *session) cancel() {
	for {
		if c := s.life.made.Load(); c != nil {
			c.cancel()
			return
		}
		if s.life.made.CompareAndSwap(nil, endedLife) {
			return
		}
	}
}

// restartState is kept per session with Config.StateFile: init is the
// initialize request as forwarded upstream and caps the capabilities the
// upstream negotiated, both never changed; logLevel (the params of the last
// logging/setLevel) and subs (the resources subscribed to) are guarded by
// the session's mu. A re-initialized upstream session gets them again.
type restartState struct {
	init     []byte
	caps     []byte
	logLevel []byte
	subs     map[string]struct{}
}

// addStreamLocked stores st under its id; deleteStreamLocked removes id. Both
// keep nstreams equal to len(streams) and the session's membership of its
// shard's set of sessions with streams. The caller holds mu.
func (s *session) addStreamLocked(st *stream) {
	s.streams.put(st)
	s.streamsChangedLocked()
}

func (s *session) deleteStreamLocked(id uint64) {
	s.streams.del(id)
	s.streamsChangedLocked()
}

func (s *session) streamsChangedLocked() {
	n := int32(s.streams.len())
	was := s.nstreams.Swap(n)
	if s.withStreams == nil {
		return
	}
	switch {
	case n > 0 && was == 0 && !s.closed:
		s.withStreams.Store(s, struct{}{})
	case n == 0 && was > 0:
		s.withStreams.Delete(s)
	}
}

// maxRetainedStreams bounds the finished POST answer streams a session keeps
// for resumption (each within -stream-retention); older ones go first.
const maxRetainedStreams = 32

func newSessionID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("gateway: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

func (s *session) info() SessionInfo {
	return SessionInfo{ID: s.id, Version: s.protocolVersion(), Principal: s.principal}
}

// touch records activity; the coarse clock makes it one atomic load and, at
// most once per tick, one store.
func (s *session) touch(now int64) {
	if s.lastActive.Load() != now {
		s.lastActive.Store(now)
	}
}

// liveStreamsLocked counts streams that hold resources a client controls:
// unfinished POST answers and an attached standalone stream. Constant time:
// finished streams kept for resumption are not walked.
func (s *session) liveStreamsLocked() int {
	n := int(s.livePost.Load())
	if st := s.streams.get(0); st != nil && st.attached() {
		n++
	}
	return n
}

// pruneFinishedLocked drops the oldest finished POST answer streams beyond
// maxRetainedStreams, so a session making many calls does not keep every
// answer for the whole retention period. One a client is reading (a
// resumption) stays.
func (s *session) pruneFinishedLocked() {
	if s.finished == nil {
		return
	}
	ids := *s.finished
	for i := 0; len(ids) > maxRetainedStreams && i < len(ids); {
		if st := s.streams.get(ids[i]); st != nil && st.attached() {
			i++
			continue
		}
		s.deleteStreamLocked(ids[i])
		ids = slices.Delete(ids, i, i+1)
	}
	*s.finished = ids
}

// addFinishedLocked records that stream id (in streams, id != 0) finished;
// dropFinishedLocked that it left streams. Ids mostly finish in order, so
// the insertion is at the end.
func (s *session) addFinishedLocked(id uint64) {
	if s.finished == nil {
		s.finished = new([]uint64)
	}
	if i, found := slices.BinarySearch(*s.finished, id); !found {
		*s.finished = slices.Insert(*s.finished, i, id)
	}
}

func (s *session) dropFinishedLocked(id uint64) {
	if s.finished == nil {
		return
	}
	if i, found := slices.BinarySearch(*s.finished, id); found {
		*s.finished = slices.Delete(*s.finished, i, i+1)
	}
}

// isClosed reports whether the session ended.
func (s *session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// stream returns stream id, or nil.
func (s *session) stream(id uint64) *stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams.get(id)
}
