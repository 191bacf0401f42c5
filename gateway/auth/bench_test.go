package auth

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkAuthenticate: what one request's bearer token costs the gateway. A cached
// JWT (the common case: a client presents the same access token until it expires)
// costs a SHA-256 of the token and a map lookup; an uncached one a signature check.
func BenchmarkAuthenticate(b *testing.B) {
	dir := b.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("static-token-0123456789abcdef alice\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	rs, es := newRSA(b, "rs"), newEC(b, "es")
	keys := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(keys, jwksJSON(b, rs, es), 0o600); err != nil {
		b.Fatal(err)
	}
	jc := &JWTConfig{KeyFile: keys, Issuer: testIssuer, Audience: []string{testAudience}}
	cached, err := NewVerifier(VerifierConfig{TokensFile: tokens, JWT: jc})
	if err != nil {
		b.Fatal(err)
	}
	defer cached.Close()
	uncached, err := NewVerifier(VerifierConfig{JWT: jc, CacheSize: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer uncached.Close()
	rsTok := []byte(rs.sign(b, func(c jwt.MapClaims) { c["client_id"] = "bench" }))
	esTok := []byte(es.sign(b, nil))
	for _, c := range []struct {
		name  string
		v     *Verifier
		token []byte
	}{
		{"static", cached, []byte("static-token-0123456789abcdef")},
		{"jwt-cached", cached, rsTok},
		{"jwt-uncached-RS256", uncached, rsTok},
		{"jwt-uncached-ES256", uncached, esTok},
	} {
		b.Run(c.name, func(b *testing.B) {
			if _, err := c.v.Authenticate(c.token); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.v.Authenticate(c.token); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
