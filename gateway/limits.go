package gateway

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// securityDefaults validates the fields of Config that guard against
// hostile clients and fills their defaults (setDefaults calls it).
func (c *Config) securityDefaults() error {
	for _, f := range []struct {
		name string
		v    int
	}{
		{"max conns per IP", c.MaxConnsPerIP},
		{"max sessions per principal", c.MaxSessionsPerPrincipal},
		{"rate burst", c.RateBurst},
	} {
		if f.v < 0 {
			return fmt.Errorf("gateway: %s must not be negative", f.name)
		}
	}
	if c.RateLimit < 0 || math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0) {
		return errors.New("gateway: rate limit must be a non-negative number")
	}
	if c.RateLimit > 0 && c.RateBurst == 0 {
		c.RateBurst = max(1, int(math.Ceil(c.RateLimit)))
	}
	if c.AuthFailureRate < 0 || math.IsNaN(c.AuthFailureRate) || math.IsInf(c.AuthFailureRate, 0) {
		return errors.New("gateway: auth failure rate must be a non-negative number")
	}
	if c.AuthFailureRate == 0 {
		c.AuthFailureRate = DefaultAuthFailureRate
	}
	if c.AuthFailureBurst == 0 {
		c.AuthFailureBurst = DefaultAuthFailureBurst
	}
	for _, sc := range c.RequiredScopes {
		if sc == "" || strings.ContainsAny(sc, " \"\\\t\r\n") {
			return fmt.Errorf("gateway: required scope %q: scopes are non-empty tokens without spaces or quotes", sc)
		}
	}
	for _, u := range append([]string{c.ResourceURL}, c.AuthorizationServers...) {
		if u == "" {
			continue
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.User != nil ||
			p.RawQuery != "" || p.Fragment != "" || strings.ContainsAny(u, "\" ") {
			return fmt.Errorf("gateway: %q is not an absolute http(s) URL without query or fragment", u)
		}
	}
	if c.MaxHeaderBytes < 1024 {
		return errors.New("gateway: max header bytes must be at least 1024")
	}
	return nil
}

// ---- per-principal rate limit ----

// rateLimits holds a token bucket (golang.org/x/time/rate) per key: per
// principal, or per client address for anonymous callers (Server.limits),
// and per client address for failed authentications (Server.authFails).
// Memory stays bounded: a limiter idle long enough to be full again is
// dropped by the sweep (a new one would behave the same), and beyond max
// keys callers share the overflow limiter, or, without one, are not
// limited at all.
type rateLimits struct {
	limit    rate.Limit
	burst    int
	idle     int64 // ns after which an untouched limiter is full again
	max      int64 // limiters kept at once
	m        *xsync.MapOf[limitKey, *limiterEntry]
	n        atomic.Int64
	overflow *rate.Limiter // nil: keys beyond max are not limited
}

type limitKey struct {
	principal string
	addr      netip.Addr
}

type limiterEntry struct {
	lim  *rate.Limiter
	last atomic.Int64 // coarse unix ns of the last request
}

// maxLimiters bounds the limiters kept at once.
const maxLimiters = 1 << 17

// limiterSweepEvery is how often idle limiters are dropped.
const limiterSweepEvery = 30 * time.Second

// newRateLimits is the per-principal rate limit: beyond maxLimiters keys,
// callers share one overflow limiter.
func newRateLimits(limit float64, burst int) *rateLimits {
	r := newLimiters(limit, burst)
	r.overflow = rate.NewLimiter(rate.Limit(limit), burst)
	return r
}

// newLimiters is a set of limiters without an overflow limiter.
func newLimiters(limit float64, burst int) *rateLimits {
	refill := time.Duration(float64(burst) / limit * float64(time.Second))
	return &rateLimits{
		limit: rate.Limit(limit),
		burst: burst,
		idle:  int64(max(refill, time.Second)),
		max:   maxLimiters,
		m:     xsync.NewMapOf[limitKey, *limiterEntry](),
	}
}

// allow takes one request from k's bucket; when it is empty it returns how
// long until one is available.
func (r *rateLimits) allow(k limitKey, coarse int64, now time.Time) (bool, time.Duration) {
	e, ok := r.m.Load(k)
	if !ok {
		if r.n.Load() >= r.max {
			if r.overflow == nil {
				return true, 0
			}
			return r.take(r.overflow, now)
		}
		var created bool
		e, _ = r.m.LoadOrCompute(k, func() *limiterEntry {
			created = true
			return &limiterEntry{lim: rate.NewLimiter(r.limit, r.burst)}
		})
		if created {
			r.n.Add(1)
		}
	}
	if e.last.Load() != coarse {
		e.last.Store(coarse)
	}
	return r.take(e.lim, now)
}

// empty reports, without taking anything, whether k's own bucket is empty,
// and if so how long until it holds one again. A key without a limiter
// (none yet, dropped, or beyond max) is never empty: with no key kept this
// is one atomic load.
func (r *rateLimits) empty(k limitKey, now time.Time) (bool, time.Duration) {
	if r.n.Load() == 0 {
		return false, 0
	}
	e, ok := r.m.Load(k)
	if !ok {
		return false, 0
	}
	if tokens := e.lim.TokensAt(now); tokens < 1 {
		return true, time.Duration((1 - tokens) / float64(r.limit) * float64(time.Second))
	}
	return false, 0
}

func (r *rateLimits) take(l *rate.Limiter, now time.Time) (bool, time.Duration) {
	if l.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - l.TokensAt(now)
	return false, time.Duration(missing / float64(r.limit) * float64(time.Second))
}

// sweep drops the limiters untouched for longer than their refill time.
func (r *rateLimits) sweep(now int64) {
	if r == nil {
		return
	}
	r.m.Range(func(k limitKey, e *limiterEntry) bool {
		if now-e.last.Load() > r.idle {
			if _, deleted := r.m.LoadAndDelete(k); deleted {
				r.n.Add(-1)
			}
		}
		return true
	})
}

// limiterSweepLoop runs the sweeps until ctx ends (a Server-owned
// goroutine).
func (s *Server) limiterSweepLoop(ctx context.Context) {
	t := time.NewTicker(limiterSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			now := s.clock.Now()
			s.limits.sweep(now)
			s.authFails.sweep(now)
		}
	}
}

// retryAfter sets Retry-After to wait in whole seconds, at least 1.
func retryAfter(h interface{ Set(string, string) }, wait time.Duration) {
	h.Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(wait.Seconds())))))
}

// allowRate charges a request to its caller's rate limit, and answers 429
// with Retry-After (whole seconds, at least 1) when the bucket is empty.
func (s *Server) allowRate(ctx *fasthttp.RequestCtx, c caller) bool {
	if s.limits == nil {
		return true
	}
	ok, wait := s.limits.allow(limitKey{principal: c.principal, addr: c.addr}, s.clock.Now(), time.Now())
	if ok {
		return true
	}
	s.metrics.rateLimited.Add(1)
	retryAfter(&ctx.Response.Header, wait)
	s.fail(ctx, fasthttp.StatusTooManyRequests, nil, jsonrpc.CodeServerError, "Too Many Requests: rate limit exceeded", nil)
	return false
}

// ---- failed authentications per client address ----

// Failed authentications (401: no token, or one that is not valid, on the
// endpoint or the admin API) are counted per client address (clientKey:
// an IPv6 client's /64) in a token bucket of Config.AuthFailureBurst
// failures, refilled at Config.AuthFailureRate a second. While an
// address's bucket is empty, its requests are answered 429 before their
// token is checked: a client with a valid static token behind the same
// address as a guesser waits for the bucket too; only a JWT validated
// before, still cached (no signature to check, nothing a guess could hit),
// is served (authn.go, cachedTokens).
// A success costs nothing: with no address over its budget lately, one
// atomic load (rateLimits.empty), else one map lookup. The limiters are
// the rate limit's (idle ones swept, at most maxLimiters) without an
// overflow limiter: one would let whoever fills the map with addresses
// lock every new address out; beyond the cap, failures are not limited.

// adminFailures keys the admin API's failures apart from the endpoint's:
// guesses at one never lock an address out of the other.
const adminFailures = "admin"

// authFailLogEvery is how often at most the refusals are logged.
const authFailLogEvery = 10 * time.Second

// authBlocked reports whether the address's failures are over budget; then
// wait is how long until one is available again.
func (s *Server) authBlocked(scope string, addr netip.Addr, ok bool) (bool, time.Duration) {
	if s.authFails == nil || !ok {
		return false, 0
	}
	return s.authFails.empty(limitKey{principal: scope, addr: addr}, time.Now())
}

// authFailed charges a failed authentication to the address.
func (s *Server) authFailed(scope string, addr netip.Addr, ok bool) {
	if s.authFails == nil || !ok {
		return
	}
	s.authFails.allow(limitKey{principal: scope, addr: addr}, s.clock.Now(), time.Now())
}

// authRefused counts a request refused for its address's failures and logs
// it, at most once every authFailLogEvery with the refusals since the last
// line (a guesser must not flood the log either).
func (s *Server) authRefused(where string, addr netip.Addr, wait time.Duration) {
	s.metrics.authThrottled.Add(1)
	if since, ok := s.authRefusals.event(s.clock.Now()); ok {
		s.log.Warn("too many failed authentications: requests refused 429 before their token is checked",
			"on", where, "address", addrString(addr), "retry_after", wait.Round(time.Millisecond).String(),
			"refused_since_last_line", since)
	}
}

// addrString names a client key: an IPv6 key as its /64.
func addrString(a netip.Addr) string {
	if a.Is6() {
		return a.String() + "/64"
	}
	return a.String()
}

// ---- sessions per principal ----

// principalFull reports (and answers 429) whether c's sessions are at
// Config.MaxSessionsPerPrincipal: a check before the upstream is asked
// for a session, the store's own cap then holds it under any concurrency.
func (s *Server) principalFull(ctx *fasthttp.RequestCtx, c caller, id []byte) bool {
	if s.cfg.MaxSessionsPerPrincipal == 0 || s.store.OwnerCount(c.owner()) < s.cfg.MaxSessionsPerPrincipal {
		return false
	}
	s.rejectPrincipalFull(ctx, id)
	return true
}

func (s *Server) rejectPrincipalFull(ctx *fasthttp.RequestCtx, id []byte) {
	s.metrics.sessionsRejected.Add(1)
	ctx.Response.Header.Set("Retry-After", "5")
	s.fail(ctx, fasthttp.StatusTooManyRequests, id, jsonrpc.CodeServerError, "Too Many Requests: session limit per principal reached", nil)
}

// ---- eviction at the session cap ----

// evictBatch is how many eviction candidates one scan of the sessions
// keeps: at the cap, a full scan runs once per evictBatch evictions.
const evictBatch = 64

// evictor keeps the least recently active idle sessions found by the last
// scan, oldest first. mu serializes scans and pops, so concurrent
// initializes at the cap share one scan.
type evictor struct {
	mu    sync.Mutex
	queue []evictCandidate // oldest last
}

type evictCandidate struct {
	sess       *session
	lastActive int64
}

// candidateHeap is a max-heap by lastActive: the newest candidate on top,
// replaced when an older session turns up.
type candidateHeap []evictCandidate

func (h candidateHeap) Len() int           { return len(h) }
func (h candidateHeap) Less(i, j int) bool { return h[i].lastActive > h[j].lastActive }
func (h candidateHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *candidateHeap) Push(x any)        { *h = append(*h, x.(evictCandidate)) }
func (h *candidateHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// evictIdle ends the least recently active session without a call in
// flight or a connected stream (Config.EvictIdle), so a new one fits under
// the cap. It reports whether it ended one. Candidates come from a scan of
// every session, kept for the next evictions; one that was active since
// the scan is skipped.
func (s *Server) evictIdle() bool {
	e := &s.evict
	e.mu.Lock()
	defer e.mu.Unlock()
	for attempt := 0; attempt < 2; attempt++ {
		for len(e.queue) > 0 {
			c := e.queue[len(e.queue)-1]
			e.queue = e.queue[:len(e.queue)-1]
			if c.sess.busy.Load() != 0 || c.sess.lastActive.Load() != c.lastActive {
				continue
			}
			if cur, ok := s.store.Get(c.sess.id); !ok || cur != c.sess {
				continue
			}
			s.metrics.evictions.Add(1)
			s.log.Info("session evicted to make room at the session cap", "session", shortID(c.sess.id))
			s.endSession(context.Background(), c.sess, CloseEvicted, upstreamLater)
			return true
		}
		if attempt == 0 {
			e.queue = s.scanIdle()
		}
	}
	return false
}

// scanIdle returns up to evictBatch idle sessions, least recently active
// last.
func (s *Server) scanIdle() []evictCandidate {
	h := make(candidateHeap, 0, evictBatch)
	s.store.Range(func(_ string, sess *session) bool {
		if sess.busy.Load() != 0 {
			return true
		}
		c := evictCandidate{sess: sess, lastActive: sess.lastActive.Load()}
		switch {
		case len(h) < evictBatch:
			heap.Push(&h, c)
		case c.lastActive < h[0].lastActive:
			h[0] = c
			heap.Fix(&h, 0)
		}
		return true
	})
	// Pop newest first: the slice ends up newest first, oldest last.
	out := make([]evictCandidate, 0, len(h))
	for h.Len() > 0 {
		out = append(out, heap.Pop(&h).(evictCandidate))
	}
	return out
}
