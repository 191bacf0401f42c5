package gateway

import "sync/atomic"

// metrics are the gateway's counters. Each is one atomic add on its path.
type metrics struct {
	sessionsCreated  atomic.Uint64
	sessionsRejected atomic.Uint64 // initialize refused at the session cap
	sessionsClosed   [numCloseReasons]atomic.Uint64
	streamsOpened    atomic.Uint64
	streamsClosed    [numCloseReasons]atomic.Uint64
	requests         atomic.Uint64 // POSTs forwarded upstream
	upstreamErrors   atomic.Uint64
	eventsPushed     atomic.Uint64
	eventsDropped    atomic.Uint64 // refused or dropped by the drop policy
	eventsCoalesced  atomic.Uint64
	slowDisconnects  atomic.Uint64
	overflows        atomic.Uint64 // must-deliver events beyond the hard limits
	resumeHits       atomic.Uint64
	resumeMisses     atomic.Uint64
	statuses         [6]atomic.Uint64 // answers by status class: 1xx..5xx
}

func (m *metrics) streamClosed(r CloseReason) { m.streamsClosed[r].Add(1) }

func (m *metrics) status(code int) {
	if c := code / 100; c > 0 && c < len(m.statuses) {
		m.statuses[c].Add(1)
	}
}

// MetricsSnapshot is a copy of the gateway's counters.
type MetricsSnapshot struct {
	Sessions         int
	SessionsCreated  uint64
	SessionsRejected uint64
	SessionsClosed   map[string]uint64
	StreamsOpened    uint64
	StreamsClosed    map[string]uint64
	Requests         uint64
	UpstreamErrors   uint64
	EventsPushed     uint64
	EventsDropped    uint64
	EventsCoalesced  uint64
	SlowDisconnects  uint64
	Overflows        uint64
	ResumeHits       uint64
	ResumeMisses     uint64
	Status2xx        uint64
	Status4xx        uint64
	Status5xx        uint64
}

func (m *metrics) snapshot(sessions int) MetricsSnapshot {
	s := MetricsSnapshot{
		Sessions:         sessions,
		SessionsCreated:  m.sessionsCreated.Load(),
		SessionsRejected: m.sessionsRejected.Load(),
		SessionsClosed:   make(map[string]uint64, numCloseReasons),
		StreamsOpened:    m.streamsOpened.Load(),
		StreamsClosed:    make(map[string]uint64, numCloseReasons),
		Requests:         m.requests.Load(),
		UpstreamErrors:   m.upstreamErrors.Load(),
		EventsPushed:     m.eventsPushed.Load(),
		EventsDropped:    m.eventsDropped.Load(),
		EventsCoalesced:  m.eventsCoalesced.Load(),
		SlowDisconnects:  m.slowDisconnects.Load(),
		Overflows:        m.overflows.Load(),
		ResumeHits:       m.resumeHits.Load(),
		ResumeMisses:     m.resumeMisses.Load(),
		Status2xx:        m.statuses[2].Load(),
		Status4xx:        m.statuses[4].Load(),
		Status5xx:        m.statuses[5].Load(),
	}
	for r := CloseReason(0); r < numCloseReasons; r++ {
		s.SessionsClosed[r.String()] = m.sessionsClosed[r].Load()
		s.StreamsClosed[r.String()] = m.streamsClosed[r].Load()
	}
	return s
}
