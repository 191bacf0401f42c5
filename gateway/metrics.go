package gateway

import (
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync/atomic"
)

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
	droppedOldest    atomic.Uint64 // undelivered droppable events evicted (drop-oldest)
	droppedNewest    atomic.Uint64 // incoming droppable events refused (drop-newest, or no room)
	droppedCut       atomic.Uint64 // incoming droppable events refused under the disconnect policy
	eventsCoalesced  atomic.Uint64 // undelivered updates replaced by a newer one of the same key
	eventsSkipped    atomic.Uint64 // events a reader asked for that were gone (resume gaps)
	slowDisconnects  atomic.Uint64
	overflows        atomic.Uint64 // must-deliver events beyond the hard limits
	resumeHits       atomic.Uint64
	resumeMisses     atomic.Uint64
	replacements     atomic.Uint64    // connections that took a stream over from an older one
	backpressure     atomic.Uint64    // times a producer waited for its ring to make room
	upstreamSkipped  atomic.Uint64    // expired sessions not ended upstream: the reaper's queue was full
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
	DroppedOldest    uint64
	DroppedNewest    uint64
	DroppedCut       uint64
	EventsCoalesced  uint64
	EventsSkipped    uint64
	SlowDisconnects  uint64
	Overflows        uint64
	ResumeHits       uint64
	ResumeMisses     uint64
	Replacements     uint64
	Backpressure     uint64
	UpstreamSkipped  uint64
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
		DroppedOldest:    m.droppedOldest.Load(),
		DroppedNewest:    m.droppedNewest.Load(),
		DroppedCut:       m.droppedCut.Load(),
		EventsCoalesced:  m.eventsCoalesced.Load(),
		EventsSkipped:    m.eventsSkipped.Load(),
		SlowDisconnects:  m.slowDisconnects.Load(),
		Overflows:        m.overflows.Load(),
		ResumeHits:       m.resumeHits.Load(),
		ResumeMisses:     m.resumeMisses.Load(),
		Replacements:     m.replacements.Load(),
		Backpressure:     m.backpressure.Load(),
		UpstreamSkipped:  m.upstreamSkipped.Load(),
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

// WriteMetrics writes the counters in the Prometheus text exposition format.
func (s *Server) WriteMetrics(w io.Writer) {
	m := s.Metrics()
	gauge := func(name, help string, v any) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %v\n", name, help, name, name, v)
	}
	counter := func(name, help string, v uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	labeled := func(name, help, label string, vals map[string]uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n", name, help, name)
		keys := make([]string, 0, len(vals))
		for k := range vals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "%s{%s=%q} %d\n", name, label, k, vals[k])
		}
	}
	gauge("mcpgate_sessions", "Live sessions.", m.Sessions)
	counter("mcpgate_sessions_created_total", "Sessions created.", m.SessionsCreated)
	counter("mcpgate_sessions_rejected_total", "initialize refused at the session cap.", m.SessionsRejected)
	labeled("mcpgate_sessions_closed_total", "Sessions ended, by reason.", "reason", m.SessionsClosed)
	counter("mcpgate_streams_opened_total", "SSE connections attached to streams.", m.StreamsOpened)
	labeled("mcpgate_streams_closed_total", "SSE connections detached, by reason.", "reason", m.StreamsClosed)
	counter("mcpgate_requests_total", "POSTs forwarded upstream.", m.Requests)
	counter("mcpgate_upstream_errors_total", "Upstream failures.", m.UpstreamErrors)
	counter("mcpgate_events_pushed_total", "Upstream messages stored in stream rings.", m.EventsPushed)
	labeled("mcpgate_events_dropped_total", "Droppable events dropped by the drop policy, by reason.", "reason", map[string]uint64{
		"oldest": m.DroppedOldest, "newest": m.DroppedNewest, "disconnect": m.DroppedCut,
	})
	counter("mcpgate_events_coalesced_total", "Undelivered updates replaced by a newer one (progress per token, list_changed per kind).", m.EventsCoalesced)
	counter("mcpgate_events_skipped_total", "Events a reader asked for that were no longer buffered (droppable gaps).", m.EventsSkipped)
	counter("mcpgate_slow_consumer_disconnects_total", "Readers cut because their ring was full.", m.SlowDisconnects)
	counter("mcpgate_ring_overflows_total", "Must-deliver messages larger than a stream's byte limit (answers become errors, requests are refused upstream).", m.Overflows)
	counter("mcpgate_resume_hits_total", "Last-Event-ID resumes served.", m.ResumeHits)
	counter("mcpgate_resume_misses_total", "Last-Event-ID resumes refused.", m.ResumeMisses)
	counter("mcpgate_stream_replacements_total", "Client connections that took a stream over from an older connection of it (a reconnecting client).", m.Replacements)
	counter("mcpgate_backpressure_waits_total", "Times an upstream reader waited for a full ring of must-deliver events to make room.", m.Backpressure)
	counter("mcpgate_upstream_close_skipped_total", "Expired sessions left to expire upstream because too many upstream closes were queued.", m.UpstreamSkipped)
	labeled("mcpgate_http_responses_total", "Answers by status class.", "class", map[string]uint64{
		"2xx": m.Status2xx, "4xx": m.Status4xx, "5xx": m.Status5xx,
	})
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gauge("go_goroutines", "Goroutines.", runtime.NumGoroutine())
	gauge("go_memstats_heap_inuse_bytes", "Heap bytes in use.", ms.HeapInuse)
	gauge("go_memstats_sys_bytes", "Bytes obtained from the OS.", ms.Sys)
	if rss, ok := residentBytes(); ok {
		gauge("process_resident_memory_bytes", "Resident set size.", rss)
	}
}
