package auth

import (
	"crypto/sha256"
	"errors"
	"sync/atomic"
	"time"

	"github.com/puzpuzpuz/xsync/v3"
)

// Defaults for VerifierConfig zero values.
const (
	DefaultCacheSize = 16384
	DefaultCacheTTL  = 5 * time.Minute
)

// VerifierConfig configures a Verifier: static tokens, JWT validation, or
// both (a static token is looked up first).
type VerifierConfig struct {
	// TokensFile is a file of static tokens (ParseTokens); "" = none.
	TokensFile string
	// JWT validates JWT access tokens; nil = none.
	JWT *JWTConfig
	// CacheSize bounds the validated JWTs kept; 0 = DefaultCacheSize,
	// <0 = no cache.
	CacheSize int
	// CacheTTL is the longest a validated JWT is trusted without checking
	// it again (a key removed from the JWKS takes this long to take
	// effect); it is never trusted past its exp. 0 = DefaultCacheTTL.
	CacheTTL time.Duration
}

// Verifier authenticates bearer tokens. Create it with NewVerifier and
// Close it when done.
type Verifier struct {
	cfg    VerifierConfig
	tokens atomic.Pointer[Tokens]
	jwt    *JWT
	cache  *tokenCache // nil: no cache
	now    func() time.Time
}

// NewVerifier loads the tokens file and the JWT keys.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.TokensFile == "" && cfg.JWT == nil {
		return nil, errors.New("auth: a verifier needs a tokens file or JWT validation")
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	v := &Verifier{cfg: cfg, now: time.Now}
	if cfg.TokensFile != "" {
		t, err := LoadTokens(cfg.TokensFile)
		if err != nil {
			return nil, err
		}
		v.tokens.Store(t)
	}
	if cfg.JWT != nil {
		j, err := NewJWT(*cfg.JWT)
		if err != nil {
			return nil, err
		}
		v.jwt = j
		if cfg.CacheSize > 0 {
			v.cache = newTokenCache(cfg.CacheSize)
		}
	}
	return v, nil
}

// Authenticate returns the identity a bearer token names: a static token's,
// or a valid JWT's (from the cache when it was validated before). Errors
// wrap ErrInvalidToken; a TokenError says why.
func (v *Verifier) Authenticate(token []byte) (Identity, error) {
	d := sha256.Sum256(token)
	if t := v.tokens.Load(); t != nil {
		if id, ok := t.lookup(&d); ok {
			return id, nil
		}
	}
	if v.jwt == nil {
		return Identity{}, invalid("unknown token", nil)
	}
	now := v.now()
	if v.cache != nil {
		if id, ok := v.cache.get(&d, now); ok {
			return id, nil
		}
	}
	id, err := v.jwt.Verify(token)
	if err != nil {
		return Identity{}, err
	}
	if v.cache != nil {
		until := now.Add(v.cfg.CacheTTL)
		if !id.Expiry.IsZero() && id.Expiry.Before(until) {
			until = id.Expiry
		}
		v.cache.put(&d, id, until)
	}
	return id, nil
}

// Cached is Authenticate limited to JWTs validated before and still in the
// cache (not expired): no signature to check. ok is false for any other
// token, a static one too (a guess at a static token costs what checking
// it costs; a cached JWT cannot be guessed without the issuer's key).
func (v *Verifier) Cached(token []byte) (id Identity, ok bool) {
	if v.jwt == nil || v.cache == nil {
		return Identity{}, false
	}
	d := sha256.Sum256(token)
	return v.cache.get(&d, v.now())
}

// Reload reads the tokens file and the JWT key file again. What fails to
// load keeps its old contents, and the error says what failed. Validated
// JWTs are forgotten.
func (v *Verifier) Reload() error {
	var errs []error
	if v.cfg.TokensFile != "" {
		if t, err := LoadTokens(v.cfg.TokensFile); err != nil {
			errs = append(errs, err)
		} else {
			v.tokens.Store(t)
		}
	}
	if v.jwt != nil {
		if err := v.jwt.Reload(); err != nil {
			errs = append(errs, err)
		}
		if v.cache != nil {
			v.cache.clear()
		}
	}
	return errors.Join(errs...)
}

// StaticTokens returns how many static tokens are loaded.
func (v *Verifier) StaticTokens() int {
	if t := v.tokens.Load(); t != nil {
		return t.Len()
	}
	return 0
}

// LegacyPrincipal is the principal that name, recorded before JWT
// principals had their own namespace (when a JWT's principal was its bare
// sub), stands for now: the static token principal name when the tokens
// file names it, else, with JWT validation, the JWT subject name
// (JWTPrincipalPrefix+name), else name. The record did not say which kind
// of token opened the session: a name both could have is given to the
// static token, whose holder could use the session before; a JWT client
// of that name starts over (404).
func (v *Verifier) LegacyPrincipal(name string) string {
	if t := v.tokens.Load(); t != nil && t.names(name) {
		return name
	}
	if v.jwt != nil {
		return JWTPrincipalPrefix + name
	}
	return name
}

// Close stops the JWKS refresh, if any. Idempotent.
func (v *Verifier) Close() {
	if v.jwt != nil {
		v.jwt.Close()
	}
}

// tokenCache holds validated JWTs by SHA-256 digest until a deadline. It
// holds at most max entries: a put into a full cache first drops expired
// entries, then, if still full, an arbitrary eighth of them.
type tokenCache struct {
	m   *xsync.MapOf[[32]byte, cacheEntry]
	n   atomic.Int64
	max int64
}

type cacheEntry struct {
	id    Identity
	until int64 // unix ns
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{m: xsync.NewMapOf[[32]byte, cacheEntry](), max: int64(max)}
}

func (c *tokenCache) get(d *[32]byte, now time.Time) (Identity, bool) {
	e, ok := c.m.Load(*d)
	if !ok {
		return Identity{}, false
	}
	if now.UnixNano() >= e.until {
		if _, deleted := c.m.LoadAndDelete(*d); deleted {
			c.n.Add(-1)
		}
		return Identity{}, false
	}
	return e.id, true
}

func (c *tokenCache) put(d *[32]byte, id Identity, until time.Time) {
	if c.n.Load() >= c.max {
		c.shrink(time.Now().UnixNano())
	}
	if _, loaded := c.m.LoadOrStore(*d, cacheEntry{id: id, until: until.UnixNano()}); !loaded {
		c.n.Add(1)
	}
}

// shrink drops expired entries and, if the cache is still full, others
// until an eighth of it is free.
func (c *tokenCache) shrink(now int64) {
	target := c.max - c.max/8 - 1
	c.m.Range(func(k [32]byte, e cacheEntry) bool {
		if e.until <= now || c.n.Load() > target {
			if _, deleted := c.m.LoadAndDelete(k); deleted {
				c.n.Add(-1)
			}
		}
		return true
	})
}

func (c *tokenCache) clear() {
	c.m.Range(func(k [32]byte, _ cacheEntry) bool {
		if _, deleted := c.m.LoadAndDelete(k); deleted {
			c.n.Add(-1)
		}
		return true
	})
}

func (c *tokenCache) len() int { return int(c.n.Load()) }
