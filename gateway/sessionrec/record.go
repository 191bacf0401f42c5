package sessionrec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// RecordVersion is the record format version AppendRecord writes and
// DecodeRecord reads.
const RecordVersion = 1

// Record is one client session.
type Record struct {
	ID        string // the gateway's Mcp-Session-Id
	Principal string // the authenticated principal, "" when anonymous
	// Namespaced: Principal is in the form that tells a JWT subject's
	// principal from a static token's (package auth: "jwt:" and the sub).
	// Records written before have a bare name for either; the gateway
	// maps them when it reads them.
	Namespaced bool
	// Owner is what the per-principal session cap counted the session
	// under: the principal, or an anonymous client's address ("" if not
	// counted, or in records written before this field).
	Owner      string
	Version    string // the protocol version negotiated with the client
	Created    int64  // unix ns
	LastActive int64  // unix ns
	Upstream   Upstream
	// Initialize is the client's initialize request as the gateway
	// forwarded it upstream (under the gateway's id), kept to re-initialize
	// an upstream session that cannot be re-attached. nil if not kept.
	Initialize []byte
	// Capabilities is the upstream's InitializeResult.capabilities (raw
	// JSON): what the gateway may tell the client after re-initializing.
	Capabilities []byte
	// LogLevel is the params object of the client's last logging/setLevel
	// (raw JSON), replayed on re-initialization; nil if none.
	LogLevel []byte
	// Subscriptions are the resource URIs the client subscribed to, replayed
	// on re-initialization.
	Subscriptions []string
	// NextCall is the last upstream request id given to a call of the
	// session; NextStream the last POST answer stream number.
	NextCall   uint64
	NextStream uint64
	Streams    []Stream
	// LegacyClient marks a session of a legacy HTTP+SSE client (the
	// 2024-11-05 transport): it lives on its owner node only, with its one
	// stream, and cannot be carried anywhere. A cluster registry entry of
	// such a session only tells the other nodes where to forward its
	// messages; such an entry has no Version, so a reader that does not
	// know this field finds no session it could serve.
	LegacyClient bool
}

// Upstream is a session's upstream binding.
type Upstream struct {
	Kind    string // "http" (Streamable HTTP), "stdio", "sse" (legacy HTTP+SSE)
	ID      string // the upstream's session id, "" if it issued none
	Version string // the protocol version negotiated with the upstream
	// Resumable: the transport can re-attach the upstream session from ID
	// and Version (Streamable HTTP); otherwise it is re-initialized.
	Resumable bool
}

// Stream is one SSE stream of a session: 0 the standalone stream, n > 0 the
// n-th POST answer.
type Stream struct {
	ID uint64
	// FinishedAt is when a POST answer finished (unix ns), 0 while live.
	FinishedAt int64
	// Delivered is the highest seq handed to any connection of the stream;
	// ConnStart where its newest connection started.
	Delivered uint64
	ConnStart uint64
	Ring      Ring
	// UpstreamLastEventID is the upstream's id of the last event the
	// gateway read of the stream (the standalone stream; "" if none had
	// one): the restarted gateway reopens the upstream's stream after it.
	UpstreamLastEventID string
}

// Ring is a stream's ring: its positions, counters and retained events.
type Ring struct {
	Last      uint64 // highest seq assigned
	Delivered uint64 // highest seq a reader consumed
	Lost      uint64 // highest gone seq whose loss fails a replay
	SkipMark  uint64 // highest seq counted as skipped
	Closed    bool
	Counters  Counters
	Events    []Event // oldest first, consecutive seqs ending at Last
}

// Counters are a ring's running counts.
type Counters struct {
	Pushed, Coalesced, DroppedOldest, DroppedNewest, DroppedDisconnect uint64
	PastSoftLimit, Overflow, Evicted, Skipped                          uint64
}

// Event is one retained event.
type Event struct {
	Seq         uint64
	MustDeliver bool
	Key         uint64 // coalescing key of a droppable event, 0 for none
	Data        []byte // the JSON-RPC message
}

// ErrRecord is wrapped by DecodeRecord's errors.
var ErrRecord = errors.New("sessionrec: malformed record")

// Field numbers. Never reuse a number: a reader skips numbers it does not
// know, so a retired field's number would be misread.
const (
	fRecID = iota + 1
	fRecPrincipal
	fRecVersion
	fRecCreated
	fRecLastActive
	fRecUpstream
	fRecInitialize
	fRecCapabilities
	fRecLogLevel
	fRecSubscription // repeated
	fRecNextCall
	fRecNextStream
	fRecStream // repeated
	fRecOwner
	fRecLegacyClient
	fRecNamespaced
)

const (
	fUpKind = iota + 1
	fUpID
	fUpVersion
	fUpResumable
)

const (
	fStID = iota + 1
	fStFinishedAt
	fStDelivered
	fStConnStart
	fStRing
	fStUpstreamLastEventID
)

const (
	fRingLast = iota + 1
	fRingDelivered
	fRingLost
	fRingSkipMark
	fRingClosed
	fRingCounters // the counters, in Counters field order, as one packed run of varints
	fRingEvent    // repeated
)

const (
	fEvSeq = iota + 1
	fEvMust
	fEvKey
	fEvData
)

const numCounters = 9

// Wire types.
const (
	wireVarint = 0
	wireBytes  = 1
)

// enc appends tagged fields. Zero values are left out; nested messages are
// always written (an empty one is a valid value).
type enc struct{ b []byte }

func (e *enc) key(field, wire int) { e.b = binary.AppendUvarint(e.b, uint64(field)<<1|uint64(wire)) }

func (e *enc) uint(field int, v uint64) {
	if v != 0 {
		e.key(field, wireVarint)
		e.b = binary.AppendUvarint(e.b, v)
	}
}

func (e *enc) int(field int, v int64) { e.uint(field, uint64(v)) }

func (e *enc) bool(field int, v bool) {
	if v {
		e.uint(field, 1)
	}
}

func (e *enc) bytes(field int, v []byte) {
	if len(v) != 0 {
		e.key(field, wireBytes)
		e.b = binary.AppendUvarint(e.b, uint64(len(v)))
		e.b = append(e.b, v...)
	}
}

func (e *enc) str(field int, v string) {
	if v != "" {
		e.key(field, wireBytes)
		e.b = binary.AppendUvarint(e.b, uint64(len(v)))
		e.b = append(e.b, v...)
	}
}

// nested writes a message built by f, its length first (patched in after,
// so nothing is encoded twice).
func (e *enc) nested(field int, f func(*enc)) {
	e.key(field, wireBytes)
	start := len(e.b)
	f(e)
	n := len(e.b) - start
	var lb [binary.MaxVarintLen64]byte
	l := binary.PutUvarint(lb[:], uint64(n))
	e.b = append(e.b, lb[:l]...) // grow by the length's size
	copy(e.b[start+l:], e.b[start:start+n])
	copy(e.b[start:], lb[:l])
}

// AppendRecord appends r's encoding (its format version, then its fields)
// to dst.
func AppendRecord(dst []byte, r *Record) []byte {
	e := enc{b: binary.AppendUvarint(dst, RecordVersion)}
	e.str(fRecID, r.ID)
	e.str(fRecPrincipal, r.Principal)
	if r.Owner != r.Principal {
		e.str(fRecOwner, r.Owner)
	}
	e.str(fRecVersion, r.Version)
	e.int(fRecCreated, r.Created)
	e.int(fRecLastActive, r.LastActive)
	e.nested(fRecUpstream, func(e *enc) {
		e.str(fUpKind, r.Upstream.Kind)
		e.str(fUpID, r.Upstream.ID)
		e.str(fUpVersion, r.Upstream.Version)
		e.bool(fUpResumable, r.Upstream.Resumable)
	})
	e.bytes(fRecInitialize, r.Initialize)
	e.bytes(fRecCapabilities, r.Capabilities)
	e.bytes(fRecLogLevel, r.LogLevel)
	for _, s := range r.Subscriptions {
		e.key(fRecSubscription, wireBytes) // written even when empty: a list element
		e.b = binary.AppendUvarint(e.b, uint64(len(s)))
		e.b = append(e.b, s...)
	}
	e.uint(fRecNextCall, r.NextCall)
	e.uint(fRecNextStream, r.NextStream)
	for i := range r.Streams {
		st := &r.Streams[i]
		e.nested(fRecStream, func(e *enc) {
			e.uint(fStID, st.ID)
			e.int(fStFinishedAt, st.FinishedAt)
			e.uint(fStDelivered, st.Delivered)
			e.uint(fStConnStart, st.ConnStart)
			e.nested(fStRing, func(e *enc) { appendRing(e, &st.Ring) })
			e.str(fStUpstreamLastEventID, st.UpstreamLastEventID)
		})
	}
	e.bool(fRecLegacyClient, r.LegacyClient)
	e.bool(fRecNamespaced, r.Namespaced)
	return e.b
}

func appendRing(e *enc, r *Ring) {
	e.uint(fRingLast, r.Last)
	e.uint(fRingDelivered, r.Delivered)
	e.uint(fRingLost, r.Lost)
	e.uint(fRingSkipMark, r.SkipMark)
	e.bool(fRingClosed, r.Closed)
	c := counterList(&r.Counters)
	if c != [numCounters]uint64{} {
		e.nested(fRingCounters, func(e *enc) {
			for _, v := range c {
				e.b = binary.AppendUvarint(e.b, v)
			}
		})
	}
	for i := range r.Events {
		ev := &r.Events[i]
		e.nested(fRingEvent, func(e *enc) {
			e.uint(fEvSeq, ev.Seq)
			e.bool(fEvMust, ev.MustDeliver)
			e.uint(fEvKey, ev.Key)
			e.bytes(fEvData, ev.Data)
		})
	}
}

func counterList(c *Counters) [numCounters]uint64 {
	return [numCounters]uint64{c.Pushed, c.Coalesced, c.DroppedOldest, c.DroppedNewest, c.DroppedDisconnect,
		c.PastSoftLimit, c.Overflow, c.Evicted, c.Skipped}
}

// dec reads tagged fields.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("sessionrec: "+format+": %w", append(args, ErrRecord)...)
	}
}

func (d *dec) uvarint(what string) uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint in %s", what)
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

// next returns the next field's number and wire type; ok is false at the
// end or on an error.
func (d *dec) next(what string) (field int, wire int, ok bool) {
	if d.err != nil || len(d.b) == 0 {
		return 0, 0, false
	}
	k := d.uvarint(what)
	if d.err != nil {
		return 0, 0, false
	}
	if k>>1 == 0 || k>>1 > math.MaxInt32 {
		d.fail("bad field number in %s", what)
		return 0, 0, false
	}
	return int(k >> 1), int(k & 1), true
}

// value reads the value of a field of wire type wire: a varint, or the
// bytes of a length-prefixed one (which alias the input).
func (d *dec) value(wire int, what string) (uint64, []byte) {
	if wire == wireVarint {
		return d.uvarint(what), nil
	}
	n := d.uvarint(what)
	if d.err != nil {
		return 0, nil
	}
	if n > uint64(len(d.b)) {
		d.fail("%s: a field of %d bytes runs past the end", what, n)
		d.b = nil
		return 0, nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return 0, v
}

// want checks a known field's wire type.
func (d *dec) want(got, want int, what string) bool {
	if got != want {
		d.fail("%s: wrong wire type", what)
		return false
	}
	return true
}

func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// DecodeRecord decodes one record written by AppendRecord (of this record
// version). Fields it does not know are skipped. The record owns its bytes:
// nothing aliases b. Errors wrap ErrRecord.
func DecodeRecord(b []byte) (*Record, error) {
	d := &dec{b: b}
	v := d.uvarint("record version")
	if d.err != nil {
		return nil, d.err
	}
	if v != RecordVersion {
		return nil, fmt.Errorf("sessionrec: record version %d, this build reads %d: %w", v, RecordVersion, ErrRecord)
	}
	r := &Record{}
	for {
		field, wire, ok := d.next("record")
		if !ok {
			break
		}
		u, raw := d.value(wire, "record")
		if d.err != nil {
			break
		}
		switch field {
		case fRecID:
			if d.want(wire, wireBytes, "id") {
				r.ID = string(raw)
			}
		case fRecPrincipal:
			if d.want(wire, wireBytes, "principal") {
				r.Principal = string(raw)
			}
		case fRecOwner:
			if d.want(wire, wireBytes, "owner") {
				r.Owner = string(raw)
			}
		case fRecVersion:
			if d.want(wire, wireBytes, "version") {
				r.Version = string(raw)
			}
		case fRecCreated:
			if d.want(wire, wireVarint, "created") {
				r.Created = int64(u)
			}
		case fRecLastActive:
			if d.want(wire, wireVarint, "last active") {
				r.LastActive = int64(u)
			}
		case fRecUpstream:
			if d.want(wire, wireBytes, "upstream") {
				d.upstream(raw, &r.Upstream)
			}
		case fRecInitialize:
			if d.want(wire, wireBytes, "initialize") {
				r.Initialize = clone(raw)
			}
		case fRecCapabilities:
			if d.want(wire, wireBytes, "capabilities") {
				r.Capabilities = clone(raw)
			}
		case fRecLogLevel:
			if d.want(wire, wireBytes, "log level") {
				r.LogLevel = clone(raw)
			}
		case fRecSubscription:
			if d.want(wire, wireBytes, "subscription") {
				r.Subscriptions = append(r.Subscriptions, string(raw))
			}
		case fRecNextCall:
			if d.want(wire, wireVarint, "next call") {
				r.NextCall = u
			}
		case fRecNextStream:
			if d.want(wire, wireVarint, "next stream") {
				r.NextStream = u
			}
		case fRecStream:
			if d.want(wire, wireBytes, "stream") {
				r.Streams = append(r.Streams, Stream{})
				d.stream(raw, &r.Streams[len(r.Streams)-1])
			}
		case fRecLegacyClient:
			if d.want(wire, wireVarint, "legacy client") {
				r.LegacyClient = u != 0
			}
		case fRecNamespaced:
			if d.want(wire, wireVarint, "namespaced") {
				r.Namespaced = u != 0
			}
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}

func (d *dec) upstream(b []byte, u *Upstream) {
	sub := &dec{b: b}
	for {
		field, wire, ok := sub.next("upstream")
		if !ok {
			break
		}
		v, raw := sub.value(wire, "upstream")
		if sub.err != nil {
			break
		}
		switch field {
		case fUpKind:
			if sub.want(wire, wireBytes, "upstream kind") {
				u.Kind = string(raw)
			}
		case fUpID:
			if sub.want(wire, wireBytes, "upstream id") {
				u.ID = string(raw)
			}
		case fUpVersion:
			if sub.want(wire, wireBytes, "upstream version") {
				u.Version = string(raw)
			}
		case fUpResumable:
			if sub.want(wire, wireVarint, "upstream resumable") {
				u.Resumable = v != 0
			}
		}
	}
	if d.err == nil {
		d.err = sub.err
	}
}

func (d *dec) stream(b []byte, st *Stream) {
	sub := &dec{b: b}
	for {
		field, wire, ok := sub.next("stream")
		if !ok {
			break
		}
		v, raw := sub.value(wire, "stream")
		if sub.err != nil {
			break
		}
		switch field {
		case fStID:
			if sub.want(wire, wireVarint, "stream id") {
				st.ID = v
			}
		case fStFinishedAt:
			if sub.want(wire, wireVarint, "stream finished at") {
				st.FinishedAt = int64(v)
			}
		case fStDelivered:
			if sub.want(wire, wireVarint, "stream delivered") {
				st.Delivered = v
			}
		case fStConnStart:
			if sub.want(wire, wireVarint, "stream connection start") {
				st.ConnStart = v
			}
		case fStRing:
			if sub.want(wire, wireBytes, "ring") {
				sub.ring(raw, &st.Ring)
			}
		case fStUpstreamLastEventID:
			if sub.want(wire, wireBytes, "stream upstream last event id") {
				st.UpstreamLastEventID = string(raw)
			}
		}
	}
	if d.err == nil {
		d.err = sub.err
	}
}

func (d *dec) ring(b []byte, r *Ring) {
	sub := &dec{b: b}
	for {
		field, wire, ok := sub.next("ring")
		if !ok {
			break
		}
		v, raw := sub.value(wire, "ring")
		if sub.err != nil {
			break
		}
		switch field {
		case fRingLast:
			if sub.want(wire, wireVarint, "ring last") {
				r.Last = v
			}
		case fRingDelivered:
			if sub.want(wire, wireVarint, "ring delivered") {
				r.Delivered = v
			}
		case fRingLost:
			if sub.want(wire, wireVarint, "ring lost") {
				r.Lost = v
			}
		case fRingSkipMark:
			if sub.want(wire, wireVarint, "ring skip mark") {
				r.SkipMark = v
			}
		case fRingClosed:
			if sub.want(wire, wireVarint, "ring closed") {
				r.Closed = v != 0
			}
		case fRingCounters:
			if sub.want(wire, wireBytes, "ring counters") {
				sub.counters(raw, &r.Counters)
			}
		case fRingEvent:
			if sub.want(wire, wireBytes, "event") {
				r.Events = append(r.Events, Event{})
				sub.event(raw, &r.Events[len(r.Events)-1])
			}
		}
	}
	if d.err == nil {
		d.err = sub.err
	}
}

// counters reads the packed counters; a shorter run (an older writer)
// leaves the rest zero, a longer one's extra values are skipped.
func (d *dec) counters(b []byte, c *Counters) {
	sub := &dec{b: b}
	var v [numCounters]uint64
	for i := 0; len(sub.b) > 0 && sub.err == nil; i++ {
		x := sub.uvarint("ring counters")
		if i < numCounters {
			v[i] = x
		}
	}
	*c = Counters{Pushed: v[0], Coalesced: v[1], DroppedOldest: v[2], DroppedNewest: v[3], DroppedDisconnect: v[4],
		PastSoftLimit: v[5], Overflow: v[6], Evicted: v[7], Skipped: v[8]}
	if d.err == nil {
		d.err = sub.err
	}
}

func (d *dec) event(b []byte, ev *Event) {
	sub := &dec{b: b}
	for {
		field, wire, ok := sub.next("event")
		if !ok {
			break
		}
		v, raw := sub.value(wire, "event")
		if sub.err != nil {
			break
		}
		switch field {
		case fEvSeq:
			if sub.want(wire, wireVarint, "event seq") {
				ev.Seq = v
			}
		case fEvMust:
			if sub.want(wire, wireVarint, "event class") {
				ev.MustDeliver = v != 0
			}
		case fEvKey:
			if sub.want(wire, wireVarint, "event key") {
				ev.Key = v
			}
		case fEvData:
			if sub.want(wire, wireBytes, "event data") {
				ev.Data = clone(raw)
			}
		}
	}
	if d.err == nil {
		d.err = sub.err
	}
}
