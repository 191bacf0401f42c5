package gateway

import (
	"bytes"
	"iter"
	"strconv"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// call is one client request in flight upstream. The gateway forwards it
// under an id of its own (upID, unique in the session) and maps the answer
// back to the client's id by that number, so an upstream that re-encodes
// ids (1.50 as 1.5, "\u0061" as "a", big integers as floats) still answers
// the right request, once. See PROTOCOL.md section 3, rule 3.
type call struct {
	clientID []byte // the client's id, raw JSON as sent
	upID     uint64
	// token is the client's progress token (params._meta.progressToken,
	// raw JSON as sent), nil if it asked for none or the session is a
	// stateless request's. It goes upstream unchanged unless it equals, by
	// value, the upstream token of another call in flight in the session
	// (1 and "1" are two tokens to the client, one to an upstream that
	// matches them by value, as stdio and legacy upstreams are routed):
	// then upToken, a token of the gateway's, goes instead, and progress
	// comes back under token (PROTOCOL.md section 3, rule 3). upKey is
	// the value of the token upstream (upstream.IDKey).
	token, upToken []byte
	upKey          string
	// st is the POST answer stream relaying the call's answer (nil until
	// openPostStream made it, and for other answers); up is the upstream
	// answer stream a legacy session's pump reads for it (the legacy stream
	// is the session's, not the call's); solo says the call is the only one
	// of its POST; cancelled that the client cancelled it
	// (notifications/cancelled). All are guarded by the session's mu.
	st        *stream
	up        upstream.Stream
	solo      bool
	cancelled bool
}

// oneCall is the call of a POST that carries one request (nearly all of
// them), the slice that holds it and room for a short id, in one
// allocation.
type oneCall struct {
	c   call
	ptr [1]*call
	id  [24]byte
}

// initializeUpID is the upstream id of the initialize request; the calls
// of a session count up from 1.
const initializeUpID = 0

// beginCalls registers the requests among msgs as calls in flight and gives
// each an upstream id. It refuses (nil, false) if a request's id is already
// in flight in the session.
func (s *session) beginCalls(msgs []jsonrpc.Message) ([]*call, bool) {
	n := 0
	for i := range msgs {
		if msgs[i].Kind == jsonrpc.KindRequest {
			n++
		}
	}
	if n == 0 {
		return nil, true
	}
	var one *oneCall
	var calls []*call
	if n == 1 {
		one = new(oneCall)
		calls = one.ptr[:0]
	} else {
		calls = make([]*call, 0, n)
	}
	var seen map[string]struct{} // a large batch's ids: its duplicates found in linear time
	if n > callTableFew {
		seen = make(map[string]struct{}, n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range msgs {
		if msgs[i].Kind != jsonrpc.KindRequest {
			continue
		}
		if s.inflight.byClient(msgs[i].ID) != nil {
			return nil, false
		}
		if seen != nil {
			if _, dup := seen[string(msgs[i].ID)]; dup {
				return nil, false // the same id twice in one batch
			}
			seen[string(msgs[i].ID)] = struct{}{}
		} else {
			for _, c := range calls {
				if bytes.Equal(c.clientID, msgs[i].ID) {
					return nil, false // the same id twice in one batch
				}
			}
		}
		var c *call
		if one != nil {
			c = &one.c
			c.clientID = append(one.id[:0], msgs[i].ID...) // a longer id moves to the heap
		} else {
			c = &call{clientID: bytes.Clone(msgs[i].ID)}
		}
		if msgs[i].ProgressToken != nil && !s.ephemeral {
			c.token = bytes.Clone(msgs[i].ProgressToken)
		}
		calls = append(calls, c)
	}
	for _, c := range calls {
		s.nextUp++
		c.upID = s.nextUp
		if c.token != nil {
			c.upKey = upstream.IDKey(c.token)
			if s.progressCallLocked(c.upKey) != nil {
				c.upToken = strconv.AppendQuote([]byte(nil), "mcpgate-progress-"+strconv.FormatUint(c.upID, 10))
				c.upKey = upstream.IDKey(c.upToken)
				s.upTokens.Add(1)
			}
		}
		s.inflight.add(c)
	}
	return calls, true
}

// progressCallLocked returns the call in flight whose progress token
// upstream has the value key, or nil.
func (s *session) progressCallLocked(key string) *call {
	for c := range s.inflight.all() {
		if c.token != nil && c.upKey == key {
			return c
		}
	}
	return nil
}

// endCalls removes calls from the session's calls in flight; calls ended
// before are skipped.
func (s *session) endCalls(calls []*call) {
	if len(calls) == 0 {
		return
	}
	s.mu.Lock()
	for _, c := range calls {
		s.endCallLocked(c)
	}
	s.mu.Unlock()
}

// endCall removes one call from the session's calls in flight.
func (s *session) endCall(c *call) {
	s.mu.Lock()
	s.endCallLocked(c)
	s.mu.Unlock()
}

func (s *session) endCallLocked(c *call) {
	if (c.upToken != nil || c.cancelled) && s.inflight.byUp(c.upID) == c {
		if c.upToken != nil {
			s.upTokens.Add(-1)
		}
		if c.cancelled {
			s.cancelledCalls.Add(-1)
		}
	}
	s.inflight.remove(c)
}

// relayedBy records that calls are answered from an upstream stream of
// their own: on st (openPostStream, after st's upstream stream was set; a
// cluster takeover may replace that, so it is closed through st) or, for a
// legacy session, read from up by a pump of its own. It reports whether
// that upstream stream must be closed at once: its calls were all cancelled
// before, or the session closed meanwhile (endSession closes the upstream
// streams of the streams it found, and st's may not have been set yet).
func (s *session) relayedBy(st *stream, up upstream.Stream, calls []*call) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	solo := len(calls) == 1
	cancelled := len(calls) > 0
	for _, c := range calls {
		c.st, c.solo = st, solo
		if st == nil {
			c.up = up
		}
		cancelled = cancelled && c.cancelled
	}
	return s.closed || s.listenEnded.Load() || cancelled
}

// allCancelled reports whether the client cancelled every one of calls
// (none owed an answer any more). The caller holds the session's mu.
func allCancelled(calls iter.Seq[*call]) bool {
	for c := range calls {
		if !c.cancelled {
			return false
		}
	}
	return true
}

// pendingCancelled reports whether the client cancelled every call still
// pending on an answer stream: nothing is owed on it any more.
func (s *session) pendingCancelled(pending *pendingCalls) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return allCancelled(pending.all())
}

// answeredWithLocked yields the calls in flight answered from the same
// upstream stream as c: its POST's (c.st's, or a legacy pump's c.up).
func (s *session) answeredWithLocked(c *call) iter.Seq[*call] {
	return func(yield func(*call) bool) {
		for o := range s.inflight.all() {
			if o.st == c.st && o.up == c.up && !yield(o) {
				return
			}
		}
	}
}

// pumpedLocked returns the upstream answer streams that legacy sessions'
// pumps read for the calls in flight (call.up): no stream of the session
// holds them, so its end closes them itself. The caller holds mu.
func (s *session) pumpedLocked() []upstream.Stream {
	var ups []upstream.Stream
	for c := range s.inflight.all() {
		if c.up != nil {
			ups = append(ups, c.up) // a batch's more than once: Close is idempotent
		}
	}
	return ups
}

// cancelledCall reports whether the client cancelled c.
func (s *session) cancelledCall(c *call) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.cancelled
}

// cancelForwarded stops waiting for the answers of the calls that msgs
// cancel (notifications/cancelled, forwarded upstream). The upstream need
// not answer them (MCP: the receiver of a cancellation should not respond
// to the request), and a Streamable HTTP server then leaves the request's
// stream open: a POST answer stream whose calls still in flight were all
// cancelled (its one call, or what of a batch is not answered yet) has
// its upstream stream closed, so its pump ends the stream, the calls, its
// place under the stream cap and its hold on the idle clock; so has the
// upstream answer stream a legacy session's pump reads for its POST.
func (s *session) cancelForwarded(msgs []jsonrpc.Message) {
	var stop []*stream
	var ups []upstream.Stream
	s.mu.Lock()
	for i := range msgs {
		m := &msgs[i]
		if m.Kind != jsonrpc.KindNotification || string(m.Method) != "notifications/cancelled" {
			continue
		}
		rid, ok := jsonrpc.Lookup(m.Raw, "params", "requestId")
		if !ok {
			continue
		}
		c := s.inflight.byClient(rid)
		if c == nil {
			continue
		}
		if !c.cancelled {
			c.cancelled = true
			s.cancelledCalls.Add(1)
		}
		switch {
		case c.st == nil && c.up == nil:
			// Not relayed yet: relayedBy sees the cancellation.
		case !c.solo && !allCancelled(s.answeredWithLocked(c)):
			// Its POST's other calls are still owed their answers.
		case c.st != nil:
			stop = append(stop, c.st)
		default:
			ups = append(ups, c.up)
		}
	}
	s.mu.Unlock()
	for _, st := range stop {
		st.closeUpstream()
	}
	for _, up := range ups {
		_ = up.Close()
	}
}

// upIDOf returns the upstream id of the client's call id, if it is in flight.
func (s *session) upIDOf(clientID []byte) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.inflight.byClient(clientID); c != nil {
		return c.upID, true
	}
	return 0, false
}

// progressOf returns msg, a notifications/progress whose raw token is
// tok, under the client's token of the call in flight whose token upstream
// tok is (out holds a rewritten one); a token no call in flight carries
// upstream passes unchanged.
func (s *session) progressOf(msg, tok []byte, out *[]byte) []byte {
	if s.upTokens.Load() == 0 {
		return msg // no call's token was rewritten: nothing to look up
	}
	key := upstream.IDKey(tok)
	s.mu.Lock()
	c := s.progressCallLocked(key)
	s.mu.Unlock()
	if c == nil || c.upToken == nil {
		return msg
	}
	*out = jsonrpc.AppendReplaced((*out)[:0], msg, tok, c.token)
	return *out
}

// sentToken reports whether c's progress token upstream is tok, byte for
// byte.
func (c *call) sentToken(tok []byte) bool {
	up := c.upToken
	if up == nil {
		up = c.token
	}
	return up != nil && bytes.Equal(up, tok)
}

// liveToken reports whether a call in flight that the client has not
// cancelled carries the progress token tok (raw JSON) upstream: the client
// forgets a call's token when it cancels the call, and progress for it is
// then an error to it (the TypeScript SDK reports one). It is always true
// for a stateless request's session, which keeps no tokens, and on a
// cluster node: the calls another node forwarded, or whose answer stream
// this node took over, are in flight there, not here.
func (s *session) liveToken(tok []byte) bool {
	if s.ephemeral || s.cluster != nil {
		return true
	}
	inFlight, cancelled := s.tokenCall(tok)
	return inFlight && !cancelled
}

// cancelledToken reports whether tok (raw JSON) is the progress token
// upstream of a call in flight that the client cancelled (liveToken).
func (s *session) cancelledToken(tok []byte) bool {
	if s.cancelledCalls.Load() == 0 {
		return false // no lookup while nothing is cancelled
	}
	_, cancelled := s.tokenCall(tok)
	return cancelled
}

// tokenCall reports whether a call in flight carries the progress token
// tok (raw JSON) upstream, and whether the client cancelled that call.
func (s *session) tokenCall(tok []byte) (inFlight, cancelled bool) {
	key := upstream.IDKey(tok)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.progressCallLocked(key)
	return c != nil, c != nil && c.cancelled
}

// callOf returns the call in flight with upstream id raw (JSON), or nil.
func (s *session) callOf(raw []byte) *call {
	up, ok := parseUpID(raw)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight.byUp(up)
}

// callTable is a session's calls in flight, found by the client's id and
// by the upstream id. A session has a few in flight at a time: up to
// callTableFew are kept in a slice and searched, past that in two maps
// (dropped again once no call is in flight), so a new session's first
// calls cost one small allocation instead of two maps.
type callTable struct {
	few    []*call // while the maps are nil
	byID   map[string]*call
	byUpID map[uint64]*call
}

const callTableFew = 8

func (t *callTable) len() int {
	if t.byUpID != nil {
		return len(t.byUpID)
	}
	return len(t.few)
}

func (t *callTable) add(c *call) {
	if t.byUpID == nil && len(t.few) < callTableFew {
		if t.few == nil {
			t.few = make([]*call, 0, 2)
		}
		t.few = append(t.few, c)
		return
	}
	if t.byUpID == nil {
		t.byID = make(map[string]*call, 2*callTableFew)
		t.byUpID = make(map[uint64]*call, 2*callTableFew)
		for _, f := range t.few {
			t.byID[string(f.clientID)], t.byUpID[f.upID] = f, f
		}
		clear(t.few)
		t.few = t.few[:0]
	}
	t.byID[string(c.clientID)], t.byUpID[c.upID] = c, c
}

// remove takes c out, if it is in the table (not ended before).
func (t *callTable) remove(c *call) {
	if t.byUpID != nil {
		if t.byUpID[c.upID] == c {
			delete(t.byUpID, c.upID)
			delete(t.byID, string(c.clientID))
			if len(t.byUpID) == 0 {
				t.byID, t.byUpID = nil, nil // back to the slice
			}
		}
		return
	}
	for i, f := range t.few {
		if f == c {
			last := len(t.few) - 1
			t.few[i] = t.few[last]
			t.few[last] = nil
			t.few = t.few[:last]
			return
		}
	}
}

// all yields the calls in the table.
func (t *callTable) all() iter.Seq[*call] {
	return func(yield func(*call) bool) {
		if t.byUpID != nil {
			for _, c := range t.byUpID {
				if !yield(c) {
					return
				}
			}
			return
		}
		for _, c := range t.few {
			if !yield(c) {
				return
			}
		}
	}
}

func (t *callTable) byClient(id []byte) *call {
	if t.byUpID != nil {
		return t.byID[string(id)]
	}
	for _, c := range t.few {
		if bytes.Equal(c.clientID, id) {
			return c
		}
	}
	return nil
}

func (t *callTable) byUp(up uint64) *call {
	if t.byUpID != nil {
		return t.byUpID[up]
	}
	for _, c := range t.few {
		if c.upID == up {
			return c
		}
	}
	return nil
}

// parseUpID reads an id the gateway gave a request, as an upstream echoes
// it: an integer, in any JSON spelling of its value (17, 17.0, 1.7e1), or
// a string of its digits.
func parseUpID(raw []byte) (uint64, bool) {
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	if v, err := strconv.ParseUint(string(raw), 10, 64); err == nil {
		return v, true
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f < 0 || f > 1<<53 || f != float64(uint64(f)) {
		return 0, false
	}
	return uint64(f), true
}

// findCall returns the call of calls with upstream id up, or nil.
func findCall(calls []*call, up uint64) *call {
	if i := callIndex(calls, up); i >= 0 {
		return calls[i]
	}
	return nil
}

// callIndex returns the index of the call with upstream id up in calls, or
// -1. A POST's calls have consecutive upstream ids (beginCalls), so a large
// batch's answers are found without a search; other lists (a cluster's
// recovered calls) are searched.
func callIndex(calls []*call, up uint64) int {
	if len(calls) > 0 && up >= calls[0].upID {
		if i := up - calls[0].upID; i < uint64(len(calls)) && calls[i].upID == up {
			return int(i)
		}
	}
	for i, c := range calls {
		if c.upID == up {
			return i
		}
	}
	return -1
}

// upstreamBody appends to dst the body to forward for a client POST whose
// messages are msgs: each request carries the upstream id of its call, and
// a notifications/cancelled names the upstream id of the call it cancels
// (one for a call not in flight is left out: PROTOCOL.md section 2, rule
// 37). Responses and other notifications pass unchanged. It returns nil
// when nothing is left to forward.
func upstreamBody(dst []byte, sess *session, body []byte, msgs []jsonrpc.Message, calls []*call, batch bool) []byte {
	if !batch {
		out, keep := upstreamMessage(dst, sess, msgs[0], calls)
		if !keep {
			return nil
		}
		return out
	}
	dst = append(dst, '[')
	kept := 0
	for i := range msgs {
		mark := len(dst)
		if kept > 0 {
			dst = append(dst, ',')
		}
		var keep bool
		if dst, keep = upstreamMessage(dst, sess, msgs[i], calls); keep {
			kept++
		} else {
			dst = dst[:mark]
		}
	}
	if kept == 0 {
		return nil
	}
	return append(dst, ']')
}

// upstreamMessage appends one message as forwarded upstream; keep is false
// for a cancellation of a call that is not in flight.
func upstreamMessage(dst []byte, sess *session, m jsonrpc.Message, calls []*call) ([]byte, bool) {
	var num [20]byte
	switch m.Kind {
	case jsonrpc.KindRequest:
		for _, c := range calls {
			if bytes.Equal(c.clientID, m.ID) {
				up := strconv.AppendUint(num[:0], c.upID, 10)
				if c.upToken != nil { // its token collides upstream: the gateway's instead
					return appendReplacedTwo(dst, m.Raw, m.ID, up, m.ProgressToken, c.upToken), true
				}
				return jsonrpc.AppendReplaced(dst, m.Raw, m.ID, up), true
			}
		}
	case jsonrpc.KindNotification:
		if string(m.Method) == "notifications/cancelled" {
			rid, ok := jsonrpc.Lookup(m.Raw, "params", "requestId")
			if !ok {
				break // malformed: the upstream judges it
			}
			up, ok := sess.upIDOf(rid)
			if !ok {
				return dst, false
			}
			return jsonrpc.AppendReplaced(dst, m.Raw, rid, strconv.AppendUint(num[:0], up, 10)), true
		}
	}
	return append(dst, m.Raw...), true
}

// appendReplacedTwo is jsonrpc.AppendReplaced for two parts of msg that do
// not overlap (a request's id and its progress token, in either order).
func appendReplacedTwo(dst, msg, a, ra, b, rb []byte) []byte {
	if cap(a) < cap(b) { // a comes after b in msg
		a, ra, b, rb = b, rb, a, ra
	}
	offB := cap(msg) - cap(b)
	dst = jsonrpc.AppendReplaced(dst, msg[:offB], a, ra) // panics unless a ends before b
	dst = append(dst, rb...)
	return append(dst, msg[offB+len(b):]...)
}

// clientAnswer appends to dst an upstream answer (a response, or a batch of
// them) with each response's id mapped back to the client's, by the calls
// of the POST it answers. Responses that answer none of them (late, or for
// another request) are left out; ok is false if nothing is left.
func clientAnswer(dst []byte, p *jsonrpc.Parser, answer []byte, calls []*call) ([]byte, bool) {
	msgs, batch, perr := p.Parse(answer)
	if perr != nil {
		return dst, false
	}
	if dst == nil {
		dst = make([]byte, 0, len(answer)+16) // the ids' lengths may differ
	}
	if batch {
		dst = append(dst, '[')
	}
	kept := 0
	for i := range msgs {
		m := &msgs[i]
		if m.Kind != jsonrpc.KindResponse && m.Kind != jsonrpc.KindError {
			continue
		}
		var c *call
		if string(m.ID) != "null" { // an error about an unreadable request passes as it is
			up, ok := parseUpID(m.ID)
			if !ok {
				continue
			}
			if c = findCall(calls, up); c == nil {
				continue
			}
		}
		if kept > 0 {
			dst = append(dst, ',')
		}
		if c != nil {
			dst = jsonrpc.AppendReplaced(dst, m.Raw, m.ID, c.clientID)
		} else {
			dst = append(dst, m.Raw...)
		}
		kept++
	}
	if batch {
		dst = append(dst, ']')
	}
	return dst, kept > 0
}
