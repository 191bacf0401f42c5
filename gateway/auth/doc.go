// Package auth validates the bearer tokens clients present to mcpgate: as an
// OAuth 2.1 resource server (JWT access tokens, checked with
// github.com/golang-jwt/jwt/v5 against keys from a JWKS URL, fetched and
// refreshed by github.com/MicahParks/keyfunc/v3, or from a key file) and
// against static tokens from a file. A Verifier combines both and keeps the
// JWTs it validated in a bounded cache, by SHA-256 digest, until they
// expire, so a client presenting the same token on every request costs one
// hash and one map lookup, not a signature check.
//
// Secrets are never kept in clear: static tokens are held as SHA-256
// digests only, and so are cached JWTs.
//
// Concurrency contract:
//   - Verifier.Authenticate, Tokens.Lookup and JWT.Verify are safe for
//     concurrent use and never block on I/O, with one exception: a JWT
//     naming a key id the JWKS does not hold makes keyfunc fetch the JWKS
//     again, at most once per JWTConfig.MinRefreshInterval, waiting at most
//     JWTConfig.FetchTimeout.
//   - Reload (SIGHUP) may run concurrently with Authenticate: it builds the
//     new token set and keys aside and swaps them in atomically; on an
//     error the old ones stay.
//   - A JWT with a JWKS URL owns one goroutine (keyfunc's periodic
//     refresh) and the HTTP connections it fetches on; Close stops and
//     releases them. Close may be called more than once.
package auth
