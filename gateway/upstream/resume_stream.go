package upstream

import (
	"context"
	"time"
)

// StreamResumer is implemented by upstream sessions whose POST answer
// streams can be picked up again by another process from the upstream's
// last event id (Streamable HTTP: GET with Last-Event-ID). A gateway node
// that takes over a stream whose producer died uses it.
type StreamResumer interface {
	// ResumeStream opens the answer stream whose last event seen had
	// lastEventID, continuing after it. It fails with ErrSessionGone if
	// the upstream lost the session, and with a *StatusError if it
	// cannot resume that stream. Safe for concurrent use.
	ResumeStream(ctx context.Context, lastEventID string) (Stream, error)
}

// ListenResumer is implemented by upstream sessions whose standalone
// stream can be reopened after the last event the gateway read of it
// (Streamable HTTP: GET with Last-Event-ID), so that what the upstream sent
// while the gateway's connection was broken is replayed, not lost.
type ListenResumer interface {
	// ListenAfter opens the standalone stream after lastEventID. It fails
	// like Listen, and with a *StatusError when the upstream cannot resume
	// from that id (the caller then opens a fresh stream with Listen).
	ListenAfter(ctx context.Context, lastEventID string) (Stream, error)
}

// EventIDer is implemented by streams whose messages carry the upstream's
// SSE event ids.
type EventIDer interface {
	// LastEventID is the id of the last event Next returned a message of
	// (or of a priming event before it); "" if none had one. Only the
	// goroutine calling Next may call it.
	LastEventID() string
}

// RetryHinter is implemented by streams that carry the upstream's SSE
// reconnection time (the retry field), which the gateway waits before it
// reopens a stream that ended (PROTOCOL.md section 3, rule 4).
type RetryHinter interface {
	// RetryDelay is the upstream's last retry hint, clamped to
	// [minResumeDelay, maxResumeDelay]; 0 if it sent none. Only the
	// goroutine calling Next may call it.
	RetryDelay() time.Duration
}

var (
	_ RetryHinter   = (*httpStream)(nil)
	_ StreamResumer = (*httpSession)(nil)
	_ ListenResumer = (*httpSession)(nil)
	_ EventIDer     = (*httpStream)(nil)
)

// ResumeStream resumes an answer stream with GET + Last-Event-ID.
func (s *httpSession) ResumeStream(ctx context.Context, lastEventID string) (Stream, error) {
	return asStream(s.get(ctx, []byte(lastEventID), true))
}

// ListenAfter reopens the standalone stream with GET + Last-Event-ID.
func (s *httpSession) ListenAfter(ctx context.Context, lastEventID string) (Stream, error) {
	return asStream(s.get(ctx, []byte(lastEventID), false))
}

// asStream returns st as a Stream, nil on error (never a nil *httpStream in
// a non-nil interface, which callers comparing with nil would use).
func asStream(st *httpStream, err error) (Stream, error) {
	if err != nil {
		return nil, err
	}
	return st, nil
}

// LastEventID is the upstream's id of the last event read.
func (st *httpStream) LastEventID() string { return string(st.lastEventID()) }

// RetryDelay is the upstream's retry hint, 0 if it sent none.
func (st *httpStream) RetryDelay() time.Duration {
	if !st.hinted {
		return 0
	}
	return st.retry
}
