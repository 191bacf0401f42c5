package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/auth"
)

const goodToken = "good-token-0123456789"

// tokensVerifier is a verifier of one static token, goodToken (alice).
func tokensVerifier(t *testing.T) *auth.Verifier {
	t.Helper()
	f := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(f, []byte(goodToken+" alice\n"), 0o600))
	v, err := auth.NewVerifier(auth.VerifierConfig{TokensFile: f})
	require.NoError(t, err)
	t.Cleanup(v.Close)
	return v
}

// fromAddr is a client whose connections come from the loopback address
// ip (any 127.0.0.0/8 address is local on Linux).
func fromAddr(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// postWith POSTs initialize with the bearer token through c and returns
// the response and its body.
func postWith(t *testing.T, c *http.Client, base, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(initJSON))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestAuthFailuresLimitedPerAddress: with the default budget, 20 failed
// authentications from one address get 401; then that address is refused
// 429 with Retry-After and a JSON-RPC error before its token is looked
// at, a valid static token too, while a valid token from another address
// still goes through.
func TestAuthFailuresLimitedPerAddress(t *testing.T) {
	s, base := authServer(t, gateway.Config{Authenticator: tokensVerifier(t)})
	attacker, other := fromAddr("127.0.0.1"), fromAddr("127.0.0.2")

	for i := 0; i < 20; i++ {
		resp, body := postWith(t, attacker, base, "wrong-token-"+strconv.Itoa(i)+"-0123456789")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "failure %d is within the budget: %s", i+1, body)
	}
	for _, tok := range []string{"wrong-token-x-0123456789", "", goodToken} {
		resp, body := postWith(t, attacker, base, tok)
		require.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "token %q after the budget is spent: %s", tok, body)
		assert.Equal(t, "1", resp.Header.Get("Retry-After"), "one failure comes back per second")
		assert.Empty(t, resp.Header.Get("WWW-Authenticate"), "no challenge: the token was not judged")
		assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
		var msg struct {
			JSONRPC string `json:"jsonrpc"`
			Error   struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &msg), body)
		assert.Equal(t, "2.0", msg.JSONRPC)
		assert.Equal(t, -32000, msg.Error.Code)
		assert.Contains(t, msg.Error.Message, "Too Many Requests")
	}
	resp, body := postWith(t, other, base, goodToken)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "another address is not held back: %s", body)
	m := s.Metrics()
	assert.Equal(t, uint64(20), m.AuthFailures, "the refusals are not authentication failures")
	assert.Equal(t, uint64(3), m.AuthThrottled)
}

// TestAuthFailureLimitOff: with AuthFailureBurst < 0 (the flag's 0),
// failures are not limited.
func TestAuthFailureLimitOff(t *testing.T) {
	s, base := authServer(t, gateway.Config{Authenticator: tokensVerifier(t), AuthFailureBurst: -1})
	c := fromAddr("127.0.0.1")
	for i := 0; i < 40; i++ {
		resp, _ := postWith(t, c, base, "wrong-token-0123456789")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "failure %d", i+1)
	}
	resp, body := postWith(t, c, base, goodToken)
	assert.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Zero(t, s.Metrics().AuthThrottled)
	assert.Equal(t, 0, s.EffectiveConfig()["auth_failure_burst"], "0: no limit")
}

// TestAuthFailureLimitTuned: the burst and rate are the configured ones,
// and Retry-After rounds the wait up to whole seconds.
func TestAuthFailureLimitTuned(t *testing.T) {
	_, base := authServer(t, gateway.Config{Authenticator: tokensVerifier(t), AuthFailureBurst: 3, AuthFailureRate: 0.25})
	c := fromAddr("127.0.0.1")
	for i := 0; i < 3; i++ {
		resp, _ := postWith(t, c, base, "")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "failure %d", i+1)
	}
	resp, _ := postWith(t, c, base, "")
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "4", resp.Header.Get("Retry-After"), "one failure every 4 s")
}

// TestAuthFailureBudgetRefills: once spent, the budget comes back at its
// rate (one failure a second by default), and only what came back.
func TestAuthFailureBudgetRefills(t *testing.T) {
	_, base := authServer(t, gateway.Config{Authenticator: tokensVerifier(t)})
	c := fromAddr("127.0.0.1")
	for i := 0; i < 20; i++ {
		resp, _ := postWith(t, c, base, "")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "failure %d", i+1)
	}
	resp, _ := postWith(t, c, base, "")
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	time.Sleep(1100 * time.Millisecond)
	resp, _ = postWith(t, c, base, "wrong-token-0123456789")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a second later one failure has come back")
	resp, _ = postWith(t, c, base, goodToken)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "and only one")
	time.Sleep(1100 * time.Millisecond)
	resp, body := postWith(t, c, base, goodToken)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a valid token: %s", body)
	resp, _ = postWith(t, c, base, goodToken)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "successes spend nothing")
	resp, _ = postWith(t, c, base, "wrong-token-0123456789")
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "the failure that came back meanwhile is still there")
}

// TestAuthFailureLimitSparesCachedJWTs: an address over its budget is
// still served with a JWT validated before (in the verifier's cache: no
// signature to check, and nothing a guesser could produce), so a guesser
// behind the same proxy or NAT does not lock out the issuer's users; a
// JWT not seen before and a static token wait for the budget (429).
func TestAuthFailureLimitSparesCachedJWTs(t *testing.T) {
	is := newIssuer(t)
	s, base := authServer(t, gateway.Config{Authenticator: staticAndJWT(t, is)})
	c := fromAddr("127.0.0.1")
	bob, carol := is.token(t, "bob", nil), is.token(t, "carol", nil)
	resp, body := postWith(t, c, base, bob)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	for i := 0; i < 20; i++ {
		resp, _ := postWith(t, c, base, "wrong-token-"+strconv.Itoa(i)+"-0123456789")
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "failure %d", i+1)
	}
	resp, body = postWith(t, c, base, bob)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a JWT validated before: %s", body)
	resp, body = postWith(t, c, base, staticAlice)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "a static token, which a guess could hit: %s", body)
	resp, body = postWith(t, c, base, carol)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "a JWT not seen before: %s", body)
	resp, _ = postWith(t, c, base, "wrong-token-x-0123456789")
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, uint64(3), s.Metrics().AuthThrottled)
	resp, body = postWith(t, fromAddr("127.0.0.2"), base, carol)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "from another address: %s", body)
}
