package auth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
