package gateway

import (
	"errors"
	"math"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// metrics are the gateway's counters. Each is one atomic add on its path;
// the Prometheus collector (promCollector) reads them at scrape time, so
// the hot path pays no label lookups and no library calls. Latency
// histograms are the library's, with their observers resolved once.
type metrics struct {
	sessionsCreated   atomic.Uint64
	sessionsRestored  atomic.Uint64 // restored from the state file at start
	sessionsRejected  atomic.Uint64 // initialize refused at the session cap
	sessionsClosed    [numCloseReasons]atomic.Uint64
	streamsOpened     atomic.Uint64
	streamsClosed     [numCloseReasons]atomic.Uint64
	requests          atomic.Uint64 // POSTs forwarded upstream
	upstreamErrors    [numUpstreamErrors]atomic.Uint64
	eventsPushed      atomic.Uint64
	droppedOldest     atomic.Uint64 // undelivered droppable events evicted (drop-oldest)
	droppedNewest     atomic.Uint64 // incoming droppable events refused (drop-newest, or no room)
	droppedCut        atomic.Uint64 // incoming droppable events refused under the disconnect policy
	eventsCoalesced   atomic.Uint64 // undelivered updates replaced by a newer one of the same key
	eventsSkipped     atomic.Uint64 // events a reader asked for that were gone (resume gaps)
	slowDisconnects   atomic.Uint64
	overflows         atomic.Uint64 // must-deliver events beyond the hard limits
	resumeHits        atomic.Uint64
	resumeMisses      atomic.Uint64
	replacements      atomic.Uint64    // connections that took a stream over from an older one
	backpressure      atomic.Uint64    // times a producer waited for its ring to make room
	upstreamSkipped   atomic.Uint64    // expired sessions whose self-expiring upstream session was not ended: the reaper's queue was full
	statelessRequests atomic.Uint64    // POSTs of the stateless revision
	statuses          [6]atomic.Uint64 // answers by status class: 1xx..5xx
	// Hostile or over-limit clients (authn.go, limits.go, listener.go).
	authFailures        atomic.Uint64 // requests refused 401 or 403 by authentication
	principalMismatches atomic.Uint64 // a session used by another principal (answered 404)
	rateLimited         atomic.Uint64 // requests refused 429 by the rate limit
	authThrottled       atomic.Uint64 // requests refused 429 for their address's failed authentications
	connsRefused        atomic.Uint64 // connections refused at the per-IP cap
	evictions           atomic.Uint64 // idle sessions ended to make room at the cap

	// latency observes the gateway's time to answer a POST (to its
	// response headers), upstreamLatency the upstream's (to its reply
	// headers), by method class.
	latency         [numMethodClasses]prometheus.Observer
	upstreamLatency [numMethodClasses]prometheus.Observer
}

func (m *metrics) streamClosed(r CloseReason) { m.streamsClosed[r].Add(1) }

func (m *metrics) status(code int) {
	if c := code / 100; c > 0 && c < len(m.statuses) {
		m.statuses[c].Add(1)
	}
}

// upstreamError is the kind of an upstream failure, one counter each.
type upstreamError uint8

const (
	upErrTimeout     upstreamError = iota // no answer in time
	upErrUnavailable                      // unreachable, reset, malformed exchange
	upErrSessionGone                      // the upstream lost the session (its 404)
	upErrStatus                           // an unexpected HTTP status
	upErrProtocol                         // an answer that breaks the protocol (none, or for no request)
	upErrStreamEnded                      // an answer stream ended before its response
	upErrTooLarge                         // an answer or event over the size limit
	numUpstreamErrors
)

var upstreamErrorNames = [numUpstreamErrors]string{
	"timeout", "unavailable", "session_gone", "status", "protocol", "stream_ended", "too_large",
}

// upstreamFailure counts err by its kind.
func (m *metrics) upstreamFailure(err error) {
	var se *upstream.StatusError
	kind := upErrUnavailable
	switch {
	case errors.Is(err, upstream.ErrTimeout):
		kind = upErrTimeout
	case errors.Is(err, upstream.ErrSessionGone):
		kind = upErrSessionGone
	case errors.Is(err, upstream.ErrTooLarge):
		kind = upErrTooLarge
	case errors.As(err, &se):
		kind = upErrStatus
	}
	m.upstreamErrors[kind].Add(1)
}

// methodClass groups methods for the latency histograms.
type methodClass uint8

const (
	classInitialize   methodClass = iota
	classToolCall                 // tools/call
	classRead                     // resources/read, prompts/get, completion/complete
	classList                     // */list
	classNotification             // notifications and responses a client posts
	classOther
	numMethodClasses
)

var methodClassNames = [numMethodClasses]string{"initialize", "tools_call", "read", "list", "notification", "other"}

func classOf(method []byte, isRequest bool) methodClass {
	if !isRequest {
		return classNotification
	}
	switch m := string(method); {
	case m == "initialize":
		return classInitialize
	case m == "tools/call":
		return classToolCall
	case m == "resources/read" || m == "prompts/get" || m == "completion/complete":
		return classRead
	case len(m) > 5 && m[len(m)-5:] == "/list":
		return classList
	}
	return classOther
}

// latencyBuckets span a loopback hop (0.1 ms) to a slow tool call (60 s).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// MetricsSnapshot is a copy of the gateway's counters.
type MetricsSnapshot struct {
	Sessions         int
	SessionsCreated  uint64
	SessionsRejected uint64
	SessionsRestored uint64
	SessionsClosed   map[string]uint64
	StreamsOpened    uint64
	StreamsClosed    map[string]uint64
	Requests         uint64
	UpstreamErrors   map[string]uint64
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

	// Hostile or over-limit clients.
	AuthFailures        uint64
	PrincipalMismatches uint64
	RateLimited         uint64
	AuthThrottled       uint64
	ConnsRefused        uint64
	Evictions           uint64
}

func (m *metrics) snapshot(sessions int) MetricsSnapshot {
	s := MetricsSnapshot{
		Sessions:         sessions,
		SessionsCreated:  m.sessionsCreated.Load(),
		SessionsRejected: m.sessionsRejected.Load(),
		SessionsRestored: m.sessionsRestored.Load(),
		SessionsClosed:   make(map[string]uint64, numCloseReasons),
		StreamsOpened:    m.streamsOpened.Load(),
		StreamsClosed:    make(map[string]uint64, numCloseReasons),
		Requests:         m.requests.Load(),
		UpstreamErrors:   make(map[string]uint64, numUpstreamErrors),
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

		AuthFailures:        m.authFailures.Load(),
		PrincipalMismatches: m.principalMismatches.Load(),
		RateLimited:         m.rateLimited.Load(),
		AuthThrottled:       m.authThrottled.Load(),
		ConnsRefused:        m.connsRefused.Load(),
		Evictions:           m.evictions.Load(),
	}
	for r := CloseReason(0); r < numCloseReasons; r++ {
		s.SessionsClosed[r.String()] = m.sessionsClosed[r].Load()
		s.StreamsClosed[r.String()] = m.streamsClosed[r].Load()
	}
	for k := upstreamError(0); k < numUpstreamErrors; k++ {
		s.UpstreamErrors[upstreamErrorNames[k]] = m.upstreamErrors[k].Load()
	}
	return s
}

// newRegistry builds the Server's Prometheus registry: the gateway's
// collector, its latency histograms, and the Go (runtime/metrics based, no
// stop-the-world) and process collectors.
func (s *Server) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	lat := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mcpgate_request_duration_seconds",
		Help:    "Time from a client POST to the gateway's response headers (JSON answers complete, SSE answers their first byte), by method class.",
		Buckets: latencyBuckets,
	}, []string{"class"})
	upLat := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "mcpgate_upstream_request_duration_seconds",
		Help:    "Time from forwarding a message upstream to the upstream's reply headers, by method class.",
		Buckets: latencyBuckets,
	}, []string{"class"})
	for c := methodClass(0); c < numMethodClasses; c++ {
		s.metrics.latency[c] = lat.WithLabelValues(methodClassNames[c])
		s.metrics.upstreamLatency[c] = upLat.WithLabelValues(methodClassNames[c])
	}
	if !libMetrics {
		reg.MustRegister(&promCollector{s: s}) // the counters only (benchmark build)
		return reg
	}
	reg.MustRegister(lat, upLat, &promCollector{s: s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Registry is the Server's Prometheus registry; library users may register
// their own collectors on it.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// MetricsHandler serves the registry in the Prometheus exposition formats.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{ErrorLog: promLogger{s}})
}

type promLogger struct{ s *Server }

func (l promLogger) Println(v ...any) { l.s.log.Warn("metrics", "err", v) }

// promCollector exposes the gateway's counters and the state found by
// walking the sessions at scrape time (sessions per shard, streams by kind
// and state, ring occupancy): O(sessions) per scrape, no cost per request.
type promCollector struct{ s *Server }

var (
	descSessions        = prometheus.NewDesc("mcpgate_sessions", "Live sessions.", nil, nil)
	descSessionsCreated = prometheus.NewDesc("mcpgate_sessions_created_total", "Sessions created.", nil, nil)
	descSessionsRej     = prometheus.NewDesc("mcpgate_sessions_rejected_total", "initialize refused at the session cap.", nil, nil)
	descSessionsRest    = prometheus.NewDesc("mcpgate_sessions_restored_total", "Sessions restored from the state file at start.", nil, nil)
	descSessionsClosed  = prometheus.NewDesc("mcpgate_sessions_closed_total", "Sessions ended, by reason.", []string{"reason"}, nil)
	descStreamsOpened   = prometheus.NewDesc("mcpgate_streams_opened_total", "Client connections attached to streams.", nil, nil)
	descStreamsClosed   = prometheus.NewDesc("mcpgate_streams_closed_total", "Client connections detached from streams, by reason.", []string{"reason"}, nil)
	descRequests        = prometheus.NewDesc("mcpgate_requests_total", "POSTs forwarded upstream.", nil, nil)
	descUpstreamErrors  = prometheus.NewDesc("mcpgate_upstream_errors_total", "Upstream failures, by kind.", []string{"kind"}, nil)
	descPushed          = prometheus.NewDesc("mcpgate_events_pushed_total", "Upstream messages stored in stream rings.", nil, nil)
	descDropped         = prometheus.NewDesc("mcpgate_events_dropped_total", "Droppable events dropped by the drop policy, by reason.", []string{"reason"}, nil)
	descCoalesced       = prometheus.NewDesc("mcpgate_events_coalesced_total", "Undelivered updates replaced by a newer one (progress per token, list_changed per kind).", nil, nil)
	descSkipped         = prometheus.NewDesc("mcpgate_events_skipped_total", "Events a reader asked for that were no longer buffered (droppable gaps).", nil, nil)
	descSlow            = prometheus.NewDesc("mcpgate_slow_consumer_disconnects_total", "Readers cut because their ring was full (disconnect policy).", nil, nil)
	descOverflows       = prometheus.NewDesc("mcpgate_ring_overflows_total", "Must-deliver messages larger than a stream's byte limit (answers become errors, requests are refused upstream).", nil, nil)
	descBackpressure    = prometheus.NewDesc("mcpgate_backpressure_waits_total", "Times an upstream reader waited for a full ring of must-deliver events to make room.", nil, nil)
	descResumeHits      = prometheus.NewDesc("mcpgate_resume_hits_total", "Last-Event-ID resumes served.", nil, nil)
	descResumeMisses    = prometheus.NewDesc("mcpgate_resume_misses_total", "Last-Event-ID resumes refused.", nil, nil)
	descReplacements    = prometheus.NewDesc("mcpgate_stream_replacements_total", "Client connections that took a stream over from an older connection of it (a reconnecting client).", nil, nil)
	descStateless       = prometheus.NewDesc("mcpgate_stateless_requests_total", "POSTs of the stateless revision (2026-07-28), valid or not.", nil, nil)
	descUpstreamSkipped = prometheus.NewDesc("mcpgate_upstream_close_skipped_total", "Expired or evicted sessions whose (Streamable HTTP) upstream session was left to expire upstream because too many upstream closes were queued.", nil, nil)
	descResponses       = prometheus.NewDesc("mcpgate_http_responses_total", "Answers by status class.", []string{"class"}, nil)
	descAuthFailures    = prometheus.NewDesc("mcpgate_auth_failures_total", "Requests refused by authentication (401: no or an invalid token; 403: a missing scope).", nil, nil)
	descMismatches      = prometheus.NewDesc("mcpgate_session_principal_mismatches_total", "Requests naming a session of another principal (answered 404, as an unknown session).", nil, nil)
	descRateLimited     = prometheus.NewDesc("mcpgate_rate_limited_total", "Requests refused with 429 by the per-principal rate limit.", nil, nil)
	descAuthThrottled   = prometheus.NewDesc("mcpgate_auth_throttled_total", "Requests (on the endpoint or the admin API) refused with 429 before their token was checked: their client address had too many failed authentications.", nil, nil)
	descConnsRefused    = prometheus.NewDesc("mcpgate_connections_refused_total", "Connections refused at the per-client-address cap.", nil, nil)
	descEvictions       = prometheus.NewDesc("mcpgate_sessions_evicted_total", "Idle sessions ended to make room at the session cap.", nil, nil)
	descShardSessions   = prometheus.NewDesc("mcpgate_shard_sessions", "Sessions per shard: the least, the most and the standard deviation across shards.", []string{"stat"}, nil)
	descStreams         = prometheus.NewDesc("mcpgate_streams", "Streams by kind (standalone, answer) and state (connected: a client reads it; waiting: live without a reader; finished: an answer kept for resumption).", []string{"kind", "state"}, nil)
	descRingEvents      = prometheus.NewDesc("mcpgate_ring_events", "Events retained in all stream rings.", nil, nil)
	descRingBytes       = prometheus.NewDesc("mcpgate_ring_bytes", "Bytes of event data retained in all stream rings.", nil, nil)
	descRingFill        = prometheus.NewDesc("mcpgate_ring_fill_ratio", "How full each stream's ring is, as a share of its soft limit (the larger of events and bytes), at scrape time.", nil, nil)
)

var ringFillBuckets = []float64{0, .1, .25, .5, .75, .9, 1, 2}

func (c *promCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descSessionsCreated, descSessionsRej, descSessionsRest, descSessionsClosed,
		descStreamsOpened, descStreamsClosed, descRequests, descUpstreamErrors, descPushed, descDropped, descCoalesced,
		descSkipped, descSlow, descOverflows, descBackpressure, descResumeHits, descResumeMisses, descReplacements,
		descUpstreamSkipped, descStateless, descResponses, descShardSessions, descStreams, descRingEvents, descRingBytes, descRingFill} {
		ch <- d
	}
	c.describeUpstream(ch)
	for _, d := range []*prometheus.Desc{descAuthFailures, descMismatches, descRateLimited, descAuthThrottled, descConnsRefused, descEvictions} {
		ch <- d
	}
}

func (c *promCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	m := &s.metrics
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descSessions, float64(s.store.Len()))
	counter(descSessionsCreated, m.sessionsCreated.Load())
	counter(descSessionsRej, m.sessionsRejected.Load())
	counter(descSessionsRest, m.sessionsRestored.Load())
	for r := CloseReason(0); r < numCloseReasons; r++ {
		counter(descSessionsClosed, m.sessionsClosed[r].Load(), r.String())
		counter(descStreamsClosed, m.streamsClosed[r].Load(), r.String())
	}
	counter(descStreamsOpened, m.streamsOpened.Load())
	counter(descRequests, m.requests.Load())
	for k := upstreamError(0); k < numUpstreamErrors; k++ {
		counter(descUpstreamErrors, m.upstreamErrors[k].Load(), upstreamErrorNames[k])
	}
	counter(descPushed, m.eventsPushed.Load())
	counter(descDropped, m.droppedOldest.Load(), "oldest")
	counter(descDropped, m.droppedNewest.Load(), "newest")
	counter(descDropped, m.droppedCut.Load(), "disconnect")
	counter(descCoalesced, m.eventsCoalesced.Load())
	counter(descSkipped, m.eventsSkipped.Load())
	counter(descSlow, m.slowDisconnects.Load())
	counter(descOverflows, m.overflows.Load())
	counter(descBackpressure, m.backpressure.Load())
	counter(descResumeHits, m.resumeHits.Load())
	counter(descResumeMisses, m.resumeMisses.Load())
	counter(descReplacements, m.replacements.Load())
	counter(descUpstreamSkipped, m.upstreamSkipped.Load())
	counter(descStateless, m.statelessRequests.Load())
	for _, cl := range []int{2, 4, 5} {
		counter(descResponses, m.statuses[cl].Load(), string(rune('0'+cl))+"xx")
	}
	counter(descAuthFailures, m.authFailures.Load())
	counter(descMismatches, m.principalMismatches.Load())
	counter(descRateLimited, m.rateLimited.Load())
	counter(descAuthThrottled, m.authThrottled.Load())
	counter(descConnsRefused, m.connsRefused.Load())
	counter(descEvictions, m.evictions.Load())

	w := s.walkStreams()
	gauge(descShardSessions, float64(w.shardMin), "min")
	gauge(descShardSessions, float64(w.shardMax), "max")
	gauge(descShardSessions, w.shardStddev, "stddev")
	for k := 0; k < 2; k++ {
		for st := 0; st < 3; st++ {
			gauge(descStreams, float64(w.streams[k][st]), streamKindNames[k], streamStateNames[st])
		}
	}
	gauge(descRingEvents, float64(w.ringEvents))
	gauge(descRingBytes, float64(w.ringBytes))
	buckets := make(map[float64]uint64, len(ringFillBuckets))
	var cum uint64
	for i, ub := range ringFillBuckets {
		cum += w.fill[i]
		buckets[ub] = cum
	}
	ch <- prometheus.MustNewConstHistogram(descRingFill, w.fillCount, w.fillSum, buckets)
	c.collectUpstream(ch)
}

var (
	streamKindNames  = [2]string{"standalone", "answer"}
	streamStateNames = [3]string{"connected", "waiting", "finished"}
)

// streamCensus is what a walk over every session finds.
type streamCensus struct {
	shardMin, shardMax int
	shardStddev        float64
	streams            [2][3]int // [kind][state]
	ringEvents         int
	ringBytes          int
	fill               []uint64 // per ringFillBuckets bucket (not cumulative)
	fillCount          uint64
	fillSum            float64
}

// walkStreams visits every stream, one session lock at a time: only the
// sessions with streams (Server.withStreams), so a scrape costs what the
// streams cost, not what a million idle sessions would; shard sizes come
// from the store's counters.
func (s *Server) walkStreams() streamCensus {
	w := streamCensus{shardMin: math.MaxInt, fill: make([]uint64, len(ringFillBuckets))}
	n := s.store.NumShards()
	var sum, sumSq float64
	for i := 0; i < n; i++ {
		count := s.store.ShardLen(i)
		s.withStreams[i].Range(func(sess *session, _ struct{}) bool {
			sess.mu.Lock()
			for id, st := range sess.streams.all() {
				kind := 1
				if id == 0 {
					kind = 0
				}
				state := 1
				switch {
				case st.attached():
					state = 0
				case st.finishedAt.Load() != 0:
					state = 2
				}
				w.streams[kind][state]++
				rs := st.ring.Stats()
				lim := st.ring.Limits()
				w.ringEvents += rs.Len
				w.ringBytes += rs.Bytes
				f := max(float64(rs.Len)/float64(lim.Capacity), float64(rs.Bytes)/float64(lim.MaxBytes))
				w.fillCount++
				w.fillSum += f
				for b, ub := range ringFillBuckets {
					if f <= ub {
						w.fill[b]++
						break
					}
				}
			}
			sess.mu.Unlock()
			return true
		})
		w.shardMin = min(w.shardMin, count)
		w.shardMax = max(w.shardMax, count)
		sum += float64(count)
		sumSq += float64(count) * float64(count)
	}
	mean := sum / float64(n)
	w.shardStddev = math.Sqrt(max(sumSq/float64(n)-mean*mean, 0))
	return w
}

// now starts a latency measurement: the time, or nothing in a build
// without the latency histograms (see libMetrics).
func (m *metrics) now() time.Time {
	if !libMetrics {
		return time.Time{}
	}
	return time.Now()
}

// observe records the seconds since start in *o (a histogram's observer,
// passed by address so a build without histograms never reads it).
func (m *metrics) observe(o *prometheus.Observer, start time.Time) {
	if libMetrics {
		(*o).Observe(time.Since(start).Seconds())
	}
}
