package mockup

import (
	"errors"
	"fmt"
	"time"
)

// Era selects which protocol revisions the server speaks.
type Era int

const (
	// EraBoth serves the session era and the stateless 2026-07-28 revision (the default).
	EraBoth Era = iota
	// EraSession serves only the session era; stateless requests are refused.
	EraSession
	// EraStateless serves only 2026-07-28: GET and DELETE get 405, initialize gets -32601.
	EraStateless
)

// String returns the flag spelling of e.
func (e Era) String() string {
	switch e {
	case EraBoth:
		return "both"
	case EraSession:
		return "session"
	case EraStateless:
		return "stateless"
	}
	return fmt.Sprintf("Era(%d)", int(e))
}

// ParseEra parses "both", "session" or "stateless".
func ParseEra(s string) (Era, error) {
	switch s {
	case "", "both":
		return EraBoth, nil
	case "session":
		return EraSession, nil
	case "stateless":
		return EraStateless, nil
	}
	return 0, fmt.Errorf("mockup.ParseEra: %q: %w", s, ErrBadConfig)
}

// Defaults for Config fields left at zero.
const (
	DefaultReplayEvents   = 1024
	DefaultHeartbeat      = 15 * time.Second
	DefaultMaxSessions    = 1 << 20
	DefaultMaxPayload     = 1 << 20
	DefaultMaxStreamCount = 1_000_000
	DefaultFinishedTTL    = 30 * time.Second
	// DefaultStreamCount is the stream tool's count when the call gives none.
	DefaultStreamCount = 10
)

// Protocol revisions.
const (
	Version20250326 = "2025-03-26"
	Version20250618 = "2025-06-18"
	Version20251125 = "2025-11-25"
	Version20260728 = "2026-07-28"
	// LatestSessionVersion is answered to an initialize asking for a revision the server
	// does not serve.
	LatestSessionVersion = Version20251125
)

// ErrBadConfig is wrapped by New for an invalid Config.
var ErrBadConfig = errors.New("mockup: bad config")

// Config configures a Server. The zero value is a valid configuration.
type Config struct {
	// Era selects the protocol revisions served. Zero is EraBoth.
	Era Era
	// PushRate is the number of notifications/message events per second pushed on every
	// new session's GET stream from its creation. Zero pushes nothing until the push tool
	// sets a rate. Negative is invalid.
	PushRate float64
	// PushPad is the number of padding bytes in each pushed event. Zero adds none.
	// Negative is invalid.
	PushPad int
	// ReplayEvents is how many events each SSE stream keeps for Last-Event-ID resumes.
	// Zero means DefaultReplayEvents; negative is invalid.
	ReplayEvents int
	// Heartbeat is the interval of SSE comment keep-alives on idle streams. Zero means
	// DefaultHeartbeat; negative disables them.
	Heartbeat time.Duration
	// AnswerSSE makes requests other than the stream tool answer with a one-event SSE
	// stream instead of JSON. The stream tool always answers with SSE.
	AnswerSSE bool
	// AnswerDelay, with AnswerSSE, sends such an answer's headers at once and its event
	// this much later (a server that sends its headers before it works on the answer,
	// as Python's uvicorn does); zero sends them together.
	AnswerDelay time.Duration
	// InjectLossEvery, when positive, silently skips every notification whose sequence
	// number is a multiple of it (the sequence number is used up all the same). Zero or
	// negative injects nothing.
	InjectLossEvery int
	// InjectDupEvery, when positive, sends every notification whose sequence number is a
	// multiple of it twice. Zero or negative injects nothing.
	InjectDupEvery int
	// MaxSessions caps live sessions; initialize beyond it gets 503. Zero means
	// DefaultMaxSessions; negative is invalid.
	MaxSessions int
	// MaxPayload caps echo sizes and pad sizes in bytes. Zero means DefaultMaxPayload;
	// negative is invalid.
	MaxPayload int
	// MaxStreamCount caps the stream tool's count. Zero means DefaultMaxStreamCount;
	// negative is invalid.
	MaxStreamCount int
	// FinishedTTL is how long a finished POST answer stream stays resumable. Zero means
	// DefaultFinishedTTL; negative is invalid.
	FinishedTTL time.Duration
}

// withDefaults validates c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Era < EraBoth || c.Era > EraStateless:
		return c, fmt.Errorf("mockup.New: era %d: %w", int(c.Era), ErrBadConfig)
	case c.PushRate < 0:
		return c, fmt.Errorf("mockup.New: negative push rate: %w", ErrBadConfig)
	case c.PushPad < 0:
		return c, fmt.Errorf("mockup.New: negative push pad: %w", ErrBadConfig)
	case c.ReplayEvents < 0:
		return c, fmt.Errorf("mockup.New: negative replay size: %w", ErrBadConfig)
	case c.MaxSessions < 0:
		return c, fmt.Errorf("mockup.New: negative session cap: %w", ErrBadConfig)
	case c.MaxPayload < 0:
		return c, fmt.Errorf("mockup.New: negative payload cap: %w", ErrBadConfig)
	case c.MaxStreamCount < 0:
		return c, fmt.Errorf("mockup.New: negative stream count cap: %w", ErrBadConfig)
	case c.FinishedTTL < 0:
		return c, fmt.Errorf("mockup.New: negative finished-stream TTL: %w", ErrBadConfig)
	case c.AnswerDelay < 0:
		return c, fmt.Errorf("mockup.New: negative answer delay: %w", ErrBadConfig)
	}
	if c.ReplayEvents == 0 {
		c.ReplayEvents = DefaultReplayEvents
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = DefaultHeartbeat
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.MaxPayload == 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.MaxStreamCount == 0 {
		c.MaxStreamCount = DefaultMaxStreamCount
	}
	if c.FinishedTTL == 0 {
		c.FinishedTTL = DefaultFinishedTTL
	}
	if c.PushPad > c.MaxPayload {
		return c, fmt.Errorf("mockup.New: push pad %d over payload cap %d: %w", c.PushPad, c.MaxPayload, ErrBadConfig)
	}
	return c, nil
}
