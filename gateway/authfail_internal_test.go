package gateway

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAuthFailureLimitersBounded: the failure buckets of many addresses
// stay within their cap (past it, failures go uncounted rather than
// sharing one bucket that would lock every new address out), and idle
// ones are swept, which makes room for new addresses again.
func TestAuthFailureLimitersBounded(t *testing.T) {
	r := newLimiters(1, 2)
	r.max = 100
	now := time.Now()
	addr := func(i int) limitKey {
		return limitKey{addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})}
	}
	for i := 0; i < 10_000; i++ {
		for j := 0; j < 3; j++ {
			r.allow(addr(i), now.UnixNano(), now)
		}
	}
	assert.Equal(t, int64(100), r.n.Load())
	assert.Equal(t, 100, r.m.Size(), "no more limiters than the cap")
	blocked, wait := r.empty(addr(5), now)
	assert.True(t, blocked, "an address within the cap is held to its budget")
	assert.InDelta(t, time.Second, wait, float64(time.Millisecond))
	blocked, _ = r.empty(addr(5000), now)
	assert.False(t, blocked, "past the cap, an address is not limited (and never locked out)")

	later := now.Add(2 * time.Second)
	blocked, _ = r.empty(addr(5), later)
	assert.False(t, blocked, "the bucket refilled")
	r.sweep(later.UnixNano() + 1)
	assert.Zero(t, r.n.Load(), "full buckets are dropped")
	assert.Zero(t, r.m.Size())
	for j := 0; j < 2; j++ {
		r.allow(addr(5000), later.UnixNano(), later)
	}
	blocked, _ = r.empty(addr(5000), later)
	assert.True(t, blocked, "with room again, a new address is counted")
}

// TestAuthRefusalsLogSparingly: refusals for spent failures are logged at
// most once every authFailLogEvery, with the count since the last line.
func TestAuthRefusalsLogSparingly(t *testing.T) {
	var buf bytes.Buffer
	s := newTestServer(t, Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	a := netip.MustParseAddr("2001:db8::")
	for i := 0; i < 1000; i++ {
		s.authRefused("endpoint", a, time.Second)
	}
	assert.Equal(t, 1, strings.Count(buf.String(), "too many failed authentications"), buf.String())
	assert.Contains(t, buf.String(), "address=2001:db8::/64")
	s.authRefusals.lastLog.Add(-int64(authFailLogEvery)) // as if the interval were over
	s.authRefused("endpoint", a, time.Second)
	assert.Equal(t, 2, strings.Count(buf.String(), "too many failed authentications"))
	assert.Contains(t, buf.String(), "refused_since_last_line=1000")
	assert.Equal(t, uint64(1001), s.Metrics().AuthThrottled)
}

// TestAdminAuthFailuresLimited: the admin API's token check is limited the
// same way, in buckets of its own.
func TestAdminAuthFailuresLimited(t *testing.T) {
	s := newTestServer(t, Config{AdminToken: "s3cret", AuthFailureBurst: 3})
	h := s.AdminHandler(true)
	get := func(remote, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "http://127.0.0.1:9090/admin/v1/config", nil)
		r.RemoteAddr = remote
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for i := 0; i < 3; i++ {
		require.Equal(t, http.StatusUnauthorized, get("192.0.2.7:4000", "guess").Code)
	}
	w := get("192.0.2.7:4001", "s3cret")
	assert.Equal(t, http.StatusTooManyRequests, w.Code, "past the budget, the right token too")
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.Contains(t, w.Body.String(), `"error":"Too Many Requests`)
	assert.Equal(t, http.StatusOK, get("192.0.2.8:4000", "s3cret").Code, "another address")
	assert.Equal(t, http.StatusOK, get("[2001:db8::1]:4000", "s3cret").Code)
	for i := 0; i < 3; i++ {
		require.Equal(t, http.StatusUnauthorized, get("[2001:db8::1]:4000", "guess").Code)
	}
	assert.Equal(t, http.StatusTooManyRequests, get("[2001:db8::ffff]:4000", "s3cret").Code, "an IPv6 client's /64 is one address")
	assert.Equal(t, http.StatusOK, get("[2001:db8:0:1::1]:4000", "s3cret").Code, "another /64")
	blocked, _ := s.authBlocked("", netip.MustParseAddr("192.0.2.7"), true)
	assert.False(t, blocked, "the endpoint's budget is apart from the admin API's")
}
