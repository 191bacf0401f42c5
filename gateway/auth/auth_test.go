package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	testIssuer   = "https://issuer.example"
	testAudience = "https://gateway.example/mcp"
)

// signer is a key an issuer signs with.
type signer struct {
	kid    string
	alg    string
	method jwt.SigningMethod
	priv   crypto.Signer
}

func newRSA(t testing.TB, kid string) signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return signer{kid: kid, alg: "RS256", method: jwt.SigningMethodRS256, priv: k}
}

func newEC(t testing.TB, kid string) signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return signer{kid: kid, alg: "ES256", method: jwt.SigningMethodES256, priv: k}
}

// sign makes a token with the standard claims of a valid token for the
// test audience and issuer, changed by edit.
func (s signer) sign(t testing.TB, edit func(jwt.MapClaims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.MapClaims{
		"iss":   testIssuer,
		"aud":   testAudience,
		"sub":   "alice",
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
		"scope": "mcp:read mcp:write",
	}
	if edit != nil {
		edit(c)
	}
	tok := jwt.NewWithClaims(s.method, c)
	tok.Header["kid"] = s.kid
	out, err := tok.SignedString(s.priv)
	require.NoError(t, err)
	return out
}

// jwksServer serves a JWKS of the current keys and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []signer
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, keys ...signer) *jwksServer {
	t.Helper()
	js := &jwksServer{keys: keys}
	js.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		js.fetches.Add(1)
		js.mu.Lock()
		body := jwksJSON(t, js.keys...)
		js.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(js.Close)
	return js
}

func (js *jwksServer) set(keys ...signer) {
	js.mu.Lock()
	js.keys = keys
	js.mu.Unlock()
}

func jwksJSON(t testing.TB, keys ...signer) []byte {
	t.Helper()
	store := jwkset.NewMemoryStorage()
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.priv.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			KID: k.kid, ALG: jwkset.ALG(k.alg), USE: jwkset.UseSig,
		}})
		require.NoError(t, err)
		require.NoError(t, store.KeyWrite(context.Background(), jwk))
	}
	raw, err := store.JSONPublic(context.Background())
	require.NoError(t, err)
	return raw
}

func jwtConfig(url string) *JWTConfig {
	return &JWTConfig{JWKSURL: url, Issuer: testIssuer, Audience: []string{testAudience}, ClockSkew: 5 * time.Second}
}

func newVerifier(t *testing.T, cfg VerifierConfig) *Verifier {
	t.Helper()
	v, err := NewVerifier(cfg)
	require.NoError(t, err)
	t.Cleanup(v.Close)
	return v
}

func reasonOf(err error) string {
	var te *TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	return ""
}

// TestJWTRefusals: every kind of bad token is refused, with a reason a
// client may see; a good one names its subject and scopes.
func TestJWTRefusals(t *testing.T) {
	good := newRSA(t, "k1")
	other := newRSA(t, "k1") // same kid, another key: a forged signature
	js := newJWKSServer(t, good)
	v := newVerifier(t, VerifierConfig{JWT: jwtConfig(js.URL)})

	id, err := v.Authenticate([]byte(good.sign(t, nil)))
	require.NoError(t, err)
	assert.Equal(t, "jwt:alice", id.Principal, "a subject's principal is in the JWT namespace")
	assert.Equal(t, []string{"mcp:read", "mcp:write"}, id.Scopes)
	assert.True(t, id.HasScopes([]string{"mcp:read"}))
	assert.False(t, id.HasScopes([]string{"admin"}))

	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(good.priv.Public()))})
	hs256 := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": testIssuer, "aud": testAudience, "sub": "mallory", "exp": time.Now().Add(time.Hour).Unix(),
	})
	hs256.Header["kid"] = "k1"
	hsTok, err := hs256.SignedString(pubPEM) // the classic confusion: the public key as an HMAC secret
	require.NoError(t, err)
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{
		"iss": testIssuer, "aud": testAudience, "sub": "mallory", "exp": time.Now().Add(time.Hour).Unix(),
	})
	noneTok, err := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)

	for _, c := range []struct {
		name, token, reason string
	}{
		{"malformed", "not.a.jwt", "malformed token"},
		{"garbage", "Zm9v", "malformed token"},
		{"expired", good.sign(t, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), "token expired"},
		{"no exp", good.sign(t, func(c jwt.MapClaims) { delete(c, "exp") }), "required claim missing"},
		{"not yet valid", good.sign(t, func(c jwt.MapClaims) { c["nbf"] = time.Now().Add(time.Minute).Unix() }), "token not valid yet"},
		{"issued in the future", good.sign(t, func(c jwt.MapClaims) { c["iat"] = time.Now().Add(time.Minute).Unix() }), "token issued in the future"},
		{"wrong issuer", good.sign(t, func(c jwt.MapClaims) { c["iss"] = "https://evil.example" }), "wrong issuer"},
		{"wrong audience", good.sign(t, func(c jwt.MapClaims) { c["aud"] = "https://other.example/mcp" }), "wrong audience"},
		{"no subject", good.sign(t, func(c jwt.MapClaims) { delete(c, "sub") }), "token has no subject"},
		{"alg none", noneTok, "algorithm not accepted"},
		{"HS256 with the public key", hsTok, "algorithm not accepted"},
		{"wrong signature", other.sign(t, nil), "bad signature"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := v.Authenticate([]byte(c.token))
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalidToken)
			assert.Equal(t, c.reason, reasonOf(err), "%v", err)
		})
	}
	// Within the clock skew, a just-expired token still passes.
	_, err = v.Authenticate([]byte(good.sign(t, func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-2 * time.Second).Unix() })))
	assert.NoError(t, err)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestJWKSRotation: a token signed by a key the JWKS did not hold at start
// (a rotation) is accepted once the JWKS has it: the unknown key id makes
// the verifier fetch it again, at most once per MinRefreshInterval. A key
// dropped from the JWKS stops working at the next refresh.
func TestJWKSRotation(t *testing.T) {
	k1, k2 := newRSA(t, "k1"), newEC(t, "k2")
	js := newJWKSServer(t, k1)
	cfg := jwtConfig(js.URL)
	cfg.MinRefreshInterval = time.Hour
	v := newVerifier(t, VerifierConfig{JWT: cfg, CacheSize: -1})
	_, err := v.Authenticate([]byte(k1.sign(t, nil)))
	require.NoError(t, err)
	startFetches := js.fetches.Load()

	js.set(k1, k2) // the issuer rotates in k2
	_, err = v.Authenticate([]byte(k2.sign(t, nil)))
	require.NoError(t, err, "a new key id is fetched")
	assert.Equal(t, startFetches+1, js.fetches.Load())

	// Unknown key ids do not each cause a fetch: at most one per
	// MinRefreshInterval.
	for i := 0; i < 5; i++ {
		_, err = v.Authenticate([]byte(newRSA(t, "bogus").sign(t, nil)))
		require.Error(t, err)
	}
	assert.LessOrEqual(t, js.fetches.Load(), startFetches+1)

	// A dropped key stops working after the periodic refresh.
	js.set(k2)
	cfg2 := jwtConfig(js.URL)
	cfg2.RefreshInterval = 50 * time.Millisecond
	v2 := newVerifier(t, VerifierConfig{JWT: cfg2, CacheSize: -1})
	_, err = v2.Authenticate([]byte(k2.sign(t, nil)))
	require.NoError(t, err)
	js.set(k1)
	require.Eventually(t, func() bool {
		_, err := v2.Authenticate([]byte(k2.sign(t, nil)))
		return err != nil
	}, 10*time.Second, 20*time.Millisecond, "a key removed from the JWKS is dropped at the next refresh")
}

// TestKeyFile: PEM and JWKS key files, reloaded on Reload; a bad reload
// keeps the old keys.
func TestKeyFile(t *testing.T) {
	k1, k2 := newEC(t, "a"), newRSA(t, "b")
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.pem")
	pemOf := func(s signer) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(s.priv.Public()))})
	}
	require.NoError(t, os.WriteFile(path, pemOf(k1), 0o600))
	cfg := &JWTConfig{KeyFile: path, Issuer: testIssuer, Audience: []string{testAudience}}
	v := newVerifier(t, VerifierConfig{JWT: cfg})
	_, err := v.Authenticate([]byte(k1.sign(t, nil)))
	require.NoError(t, err)
	_, err = v.Authenticate([]byte(k2.sign(t, nil)))
	require.Error(t, err)

	require.NoError(t, os.WriteFile(path, jwksJSON(t, k2), 0o600))
	require.NoError(t, v.Reload())
	_, err = v.Authenticate([]byte(k2.sign(t, nil)))
	require.NoError(t, err, "the JWKS file's key")
	_, err = v.Authenticate([]byte(k1.sign(t, nil)))
	require.Error(t, err, "the old key is gone (and no cache hides it)")

	require.NoError(t, os.WriteFile(path, []byte("garbage"), 0o600))
	require.Error(t, v.Reload())
	_, err = v.Authenticate([]byte(k2.sign(t, nil)))
	require.NoError(t, err, "a failed reload keeps the keys")
}

// TestStaticTokens: tokens from a file, compared by digest; a reload swaps
// them; a bad file keeps the old set.
func TestStaticTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(path, []byte("# comment\n\ntok-aaaaaaaaaaaaaaaa alice\ntok-bbbbbbbbbbbbbbbb bob\n"), 0o600))
	v := newVerifier(t, VerifierConfig{TokensFile: path})
	assert.Equal(t, 2, v.StaticTokens())
	id, err := v.Authenticate([]byte("tok-aaaaaaaaaaaaaaaa"))
	require.NoError(t, err)
	assert.Equal(t, "alice", id.Principal)
	assert.True(t, id.HasScopes([]string{"anything"}), "a static token is trusted with every scope")
	_, err = v.Authenticate([]byte("tok-aaaaaaaaaaaaaaab"))
	assert.ErrorIs(t, err, ErrInvalidToken)

	require.NoError(t, os.WriteFile(path, []byte("tok-cccccccccccccccc carol\n"), 0o600))
	require.NoError(t, v.Reload())
	_, err = v.Authenticate([]byte("tok-aaaaaaaaaaaaaaaa"))
	assert.Error(t, err, "a removed token stops working at once")
	id, err = v.Authenticate([]byte("tok-cccccccccccccccc"))
	require.NoError(t, err)
	assert.Equal(t, "carol", id.Principal)

	require.NoError(t, os.WriteFile(path, []byte("short carol\n"), 0o600))
	require.Error(t, v.Reload())
	_, err = v.Authenticate([]byte("tok-cccccccccccccccc"))
	assert.NoError(t, err, "a failed reload keeps the tokens")

	for _, bad := range []string{"onlyonefield0000000\n", "tok-aaaaaaaaaaaaaaaa a b\n", "tok-aaaaaaaaaaaaaaaa a\ntok-aaaaaaaaaaaaaaaa b\n", "tok-aaaaaaaa\x01aaaaaaa a\n", "tok-aaaaaaaaaaaaaaaa jwt:alice\n"} {
		_, err := ParseTokens([]byte(bad))
		assert.ErrorIs(t, err, ErrConfig, "%q", bad)
	}
}

// TestLegacyPrincipal: a bare name recorded before JWT subjects had their
// own namespace is a static token's principal when the tokens file names
// it, else a JWT subject's (with JWT validation on), else kept.
func TestLegacyPrincipal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(path, []byte("tok-aaaaaaaaaaaaaaaa alice\n"), 0o600))
	k := newRSA(t, "k1")
	keys := filepath.Join(t.TempDir(), "k.json")
	require.NoError(t, os.WriteFile(keys, jwksJSON(t, k), 0o600))
	jwtCfg := &JWTConfig{KeyFile: keys, Issuer: testIssuer, Audience: []string{testAudience}}

	both := newVerifier(t, VerifierConfig{TokensFile: path, JWT: jwtCfg})
	assert.Equal(t, "alice", both.LegacyPrincipal("alice"))
	assert.Equal(t, "jwt:bob", both.LegacyPrincipal("bob"))
	static := newVerifier(t, VerifierConfig{TokensFile: path})
	assert.Equal(t, "bob", static.LegacyPrincipal("bob"))
	jwtOnly := newVerifier(t, VerifierConfig{JWT: jwtCfg})
	assert.Equal(t, "jwt:alice", jwtOnly.LegacyPrincipal("alice"))
}

// TestCache: a validated JWT is served from the cache (no key needed any
// more) until its exp or the cache TTL, whichever is first; the cache stays
// within its size.
func TestCache(t *testing.T) {
	k := newRSA(t, "k1")
	path := filepath.Join(t.TempDir(), "k.json")
	require.NoError(t, os.WriteFile(path, jwksJSON(t, k), 0o600))
	v := newVerifier(t, VerifierConfig{JWT: &JWTConfig{KeyFile: path, Issuer: testIssuer, Audience: []string{testAudience}, ClockSkew: -1},
		CacheSize: 8, CacheTTL: time.Hour})
	now := time.Now()
	v.now = func() time.Time { return now }
	tok := k.sign(t, func(c jwt.MapClaims) { c["exp"] = now.Add(10 * time.Second).Unix() })
	_, err := v.Authenticate([]byte(tok))
	require.NoError(t, err)
	assert.Equal(t, 1, v.cache.len())

	// Without keys, only the cache can accept the token.
	empty := jwt.Keyfunc(func(*jwt.Token) (any, error) { return nil, errors.New("no keys") })
	v.jwt.keys.Store(&empty)
	_, err = v.Authenticate([]byte(tok))
	require.NoError(t, err, "served from the cache")
	now = now.Add(11 * time.Second)
	_, err = v.Authenticate([]byte(tok))
	require.Error(t, err, "not past its exp")

	require.NoError(t, v.Reload())
	for i := 0; i < 50; i++ {
		_, err := v.Authenticate([]byte(k.sign(t, func(c jwt.MapClaims) { c["jti"] = strings.Repeat("x", i) })))
		require.NoError(t, err)
		assert.LessOrEqual(t, v.cache.len(), 8)
	}
}

// TestCached: Cached accepts a JWT validated before and not expired, and
// nothing else, not even a static token.
func TestCached(t *testing.T) {
	k := newRSA(t, "k1")
	keys := filepath.Join(t.TempDir(), "k.json")
	require.NoError(t, os.WriteFile(keys, jwksJSON(t, k), 0o600))
	tokens := filepath.Join(t.TempDir(), "tokens")
	require.NoError(t, os.WriteFile(tokens, []byte("tok-aaaaaaaaaaaaaaaa alice\n"), 0o600))
	v := newVerifier(t, VerifierConfig{TokensFile: tokens,
		JWT: &JWTConfig{KeyFile: keys, Issuer: testIssuer, Audience: []string{testAudience}}, CacheTTL: time.Hour})
	now := time.Now()
	v.now = func() time.Time { return now }

	_, ok := v.Cached([]byte("tok-aaaaaaaaaaaaaaaa"))
	assert.False(t, ok, "a static token")
	tok := k.sign(t, func(c jwt.MapClaims) { c["exp"] = now.Add(10 * time.Second).Unix() })
	_, ok = v.Cached([]byte(tok))
	assert.False(t, ok, "a valid JWT not validated yet")
	_, err := v.Authenticate([]byte(tok))
	require.NoError(t, err)
	id, ok := v.Cached([]byte(tok))
	assert.True(t, ok, "validated before")
	assert.Equal(t, "jwt:alice", id.Principal)
	now = now.Add(11 * time.Second)
	_, ok = v.Cached([]byte(tok))
	assert.False(t, ok, "expired")

	nocache := newVerifier(t, VerifierConfig{JWT: &JWTConfig{KeyFile: keys, Issuer: testIssuer, Audience: []string{testAudience}}, CacheSize: -1})
	tok = k.sign(t, nil)
	_, err = nocache.Authenticate([]byte(tok))
	require.NoError(t, err)
	_, ok = nocache.Cached([]byte(tok))
	assert.False(t, ok, "without a cache")
}

// TestConfigRefusals: configurations that would accept tokens not meant for
// this resource, or symmetric algorithms, are refused.
func TestConfigRefusals(t *testing.T) {
	for _, c := range []JWTConfig{
		{Issuer: testIssuer, Audience: []string{testAudience}},
		{JWKSURL: "http://x", KeyFile: "y", Issuer: testIssuer, Audience: []string{testAudience}},
		{JWKSURL: "http://x", Audience: []string{testAudience}},
		{JWKSURL: "http://x", Issuer: testIssuer},
		{JWKSURL: "http://x", Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{"HS256"}},
		{JWKSURL: "http://x", Issuer: testIssuer, Audience: []string{testAudience}, Algorithms: []string{"none"}},
		{JWKSURL: "ftp://x", Issuer: testIssuer, Audience: []string{testAudience}},
	} {
		_, err := NewJWT(c)
		assert.ErrorIs(t, err, ErrConfig, "%+v", c)
	}
	_, err := NewVerifier(VerifierConfig{})
	assert.Error(t, err)
}
