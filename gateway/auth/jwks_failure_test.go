package auth

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestJWKSBadRefreshKeepsKeys: a refresh whose answer is not a JWK Set (a
// 200 with a JSON body but no "keys" member, as an error page of a proxy
// or an authorization server in trouble may be), or is larger than a JWK
// Set can be, is a failed fetch: the keys held stay, and tokens signed
// with them are still accepted.
func TestJWKSBadRefreshKeepsKeys(t *testing.T) {
	for name, bad := range map[string][]byte{
		"no keys":   []byte(`{"error":"temporarily_unavailable"}`),
		"oversized": []byte(`{"keys":[],"pad":"` + strings.Repeat("x", maxJWKSBytes) + `"}`),
	} {
		t.Run(name, func(t *testing.T) { jwksBadRefresh(t, bad) })
	}
}

func jwksBadRefresh(t *testing.T, bad []byte) {
	k1 := newRSA(t, "k1")
	good := jwksJSON(t, k1)
	var broken atomic.Bool
	var fetches atomic.Int32
	js := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if broken.Load() {
			_, _ = w.Write(bad)
			return
		}
		_, _ = w.Write(good)
	}))
	t.Cleanup(js.Close)
	cfg := jwtConfig(js.URL)
	cfg.RefreshInterval = 20 * time.Millisecond
	v := newVerifier(t, VerifierConfig{JWT: cfg, CacheSize: -1})
	tok := []byte(k1.sign(t, nil))
	_, err := v.Authenticate(tok)
	require.NoError(t, err)

	broken.Store(true)
	after := fetches.Load()
	require.Eventually(t, func() bool { return fetches.Load() >= after+3 }, 10*time.Second, 5*time.Millisecond)
	_, err = v.Authenticate(tok)
	require.NoError(t, err, "a failed refresh must not drop the keys held")
}

// TestJWKSURLCredentialsNotLogged: a password in the JWKS URL (basic
// authentication at the authorization server) appears in no log line or
// error: a failed fetch is logged with the URL redacted.
func TestJWKSURLCredentialsNotLogged(t *testing.T) {
	js := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(js.Close)
	var logs testLog
	cfg := jwtConfig(strings.Replace(js.URL, "http://", "http://gw:jwks-s3cret@", 1))
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	j, err := NewJWT(*cfg)
	if err == nil {
		t.Cleanup(j.Close)
	}
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "JWKS fetch failed") }, 10*time.Second, 5*time.Millisecond)
	assert.NotContains(t, logs.String(), "jwks-s3cret")
	assert.Contains(t, logs.String(), "gw:xxxxx@", "the URL is still recognizable")
	if err != nil {
		assert.NotContains(t, err.Error(), "jwks-s3cret")
	}
	_, err = NewJWT(JWTConfig{JWKSURL: "ftp://gw:jwks-s3cret@host/jwks", Issuer: testIssuer, Audience: []string{testAudience}})
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "jwks-s3cret")
}

// testLog is a log buffer safe for the JWKS refresher's goroutine.
type testLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
