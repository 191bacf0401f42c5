package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// Defaults for JWTConfig zero values.
const (
	DefaultClockSkew          = 30 * time.Second
	DefaultRefreshInterval    = 10 * time.Minute
	DefaultMinRefreshInterval = time.Minute
	DefaultFetchTimeout       = 5 * time.Second
)

// DefaultAlgorithms are the signature algorithms accepted when
// JWTConfig.Algorithms is nil: every asymmetric one golang-jwt implements.
// Symmetric (HS*) and none are never accepted: the keys are public.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// JWTConfig configures JWT access token validation. Exactly one of JWKSURL
// and KeyFile is required, and Issuer and Audience are: a resource server
// must accept only tokens issued for it.
type JWTConfig struct {
	// JWKSURL is where the authorization server publishes its keys (JWKS).
	// They are fetched at start, every RefreshInterval, and when a token
	// names a key id they do not hold (at most once per
	// MinRefreshInterval).
	JWKSURL string
	// KeyFile holds the verification keys: PEM (PUBLIC KEY, RSA PUBLIC
	// KEY or CERTIFICATE blocks) or a JWKS document. Reload reads it again.
	KeyFile string
	// Issuer is the iss every token must carry.
	Issuer string
	// Audience lists accepted aud values; a token must name one of them.
	Audience []string
	// Algorithms are the accepted alg values; nil = DefaultAlgorithms.
	Algorithms []string
	// ClockSkew is the leeway on exp, nbf and iat; 0 = DefaultClockSkew,
	// <0 = none.
	ClockSkew time.Duration
	// RefreshInterval: how often the JWKS is fetched again;
	// 0 = DefaultRefreshInterval.
	RefreshInterval time.Duration
	// MinRefreshInterval bounds the fetches an unknown key id causes;
	// 0 = DefaultMinRefreshInterval.
	MinRefreshInterval time.Duration
	// FetchTimeout bounds one JWKS fetch; 0 = DefaultFetchTimeout.
	FetchTimeout time.Duration
	// Logger receives failed JWKS refreshes; nil = slog.Default().
	Logger *slog.Logger
}

// JWT validates JWT access tokens.
type JWT struct {
	cfg    JWTConfig
	parser *jwt.Parser
	keys   atomic.Pointer[jwt.Keyfunc]

	// For a JWKS URL: cancel stops keyfunc's refresh goroutine, transport
	// holds the fetches' connections.
	cancel    context.CancelFunc
	transport *http.Transport
	closeOnce sync.Once
}

// NewJWT validates cfg and loads the keys: from KeyFile, or from JWKSURL
// (an unreachable URL is logged and retried; tokens fail until it answers).
func NewJWT(cfg JWTConfig) (*JWT, error) {
	switch {
	case (cfg.JWKSURL == "") == (cfg.KeyFile == ""):
		return nil, fmt.Errorf("%w: JWT validation needs exactly one of a JWKS URL and a key file", ErrConfig)
	case cfg.Issuer == "":
		return nil, fmt.Errorf("%w: JWT validation needs the issuer", ErrConfig)
	case len(cfg.Audience) == 0:
		return nil, fmt.Errorf("%w: JWT validation needs the audience", ErrConfig)
	}
	if cfg.Algorithms == nil {
		cfg.Algorithms = DefaultAlgorithms
	}
	for _, a := range cfg.Algorithms {
		if !isAsymmetric(a) {
			return nil, fmt.Errorf("%w: algorithm %q: want one of %s", ErrConfig, a, strings.Join(DefaultAlgorithms, ", "))
		}
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.MinRefreshInterval <= 0 {
		cfg.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	j := &JWT{cfg: cfg}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(cfg.Algorithms),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience...),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if cfg.ClockSkew > 0 {
		opts = append(opts, jwt.WithLeeway(cfg.ClockSkew))
	}
	j.parser = jwt.NewParser(opts...)
	if cfg.KeyFile != "" {
		if err := j.Reload(); err != nil {
			return nil, err
		}
		return j, nil
	}
	if err := j.startJWKS(); err != nil {
		return nil, err
	}
	return j, nil
}

func isAsymmetric(alg string) bool {
	for _, a := range DefaultAlgorithms {
		if a == alg {
			return true
		}
	}
	return false
}

// startJWKS fetches the JWKS and starts keyfunc's refresh goroutine.
func (j *JWT) startJWKS() error {
	if !strings.HasPrefix(j.cfg.JWKSURL, "https://") && !strings.HasPrefix(j.cfg.JWKSURL, "http://") {
		return fmt.Errorf("%w: JWKS URL %q: want http(s)://...", ErrConfig, redacted(j.cfg.JWKSURL))
	}
	ctx, cancel := context.WithCancel(context.Background())
	j.cancel = cancel
	j.transport = http.DefaultTransport.(*http.Transport).Clone()
	j.transport.MaxIdleConnsPerHost = 1
	noFail := true
	log := j.cfg.Logger
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{j.cfg.JWKSURL}, keyfunc.Override{
		Client:                    &http.Client{Transport: jwksCheck{j.transport}, Timeout: j.cfg.FetchTimeout},
		HTTPTimeout:               j.cfg.FetchTimeout,
		NoErrorReturnFirstHTTPReq: &noFail,
		RefreshInterval:           j.cfg.RefreshInterval,
		// A token naming an unknown key id fetches the JWKS again (a
		// rotation), at most once per MinRefreshInterval; the request
		// waits at most FetchTimeout for that, never for the limiter.
		RefreshUnknownKID: rate.NewLimiter(rate.Every(j.cfg.MinRefreshInterval), 1),
		RateLimitWaitMax:  j.cfg.FetchTimeout,
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
					log.Warn("JWKS fetch failed", "url", redacted(u), "err", err)
				}
			}
		},
	})
	if err != nil {
		j.Close()
		return fmt.Errorf("%w: JWKS %s: %v", ErrConfig, redacted(j.cfg.JWKSURL), err)
	}
	f := jwt.Keyfunc(kf.Keyfunc)
	j.keys.Store(&f)
	return nil
}

// redacted is a URL fit for a log line or an error: a password in it is
// replaced by xxxxx (url.URL.Redacted); one that does not parse is not
// shown.
func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	return u.Redacted()
}

// maxJWKSBytes bounds a JWKS answer: a JWK Set holds a few keys of a few
// KiB each, and one that does not end must not fill the gateway's memory.
const maxJWKSBytes = 1 << 20

// jwksCheck refuses a JWKS answer that is not a JWK Set (RFC 7517 section
// 5: the "keys" array is required), so that keyfunc counts it as a failed
// fetch and keeps the keys it holds: keyfunc replaces its keys with what a
// 200 answer's JSON holds, and a body without "keys" would leave none.
type jwksCheck struct{ next http.RoundTripper }

func (c jwksCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("the answer is larger than %d bytes: the keys held are kept", maxJWKSBytes)
	}
	var set struct {
		Keys json.RawMessage `json:"keys"`
	}
	if json.Unmarshal(body, &set) != nil || !bytes.HasPrefix(set.Keys, []byte("[")) {
		return nil, errors.New(`the answer is not a JWK Set (no "keys" array): the keys held are kept`)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// Reload reads the key file again; the old keys stay on an error. It does
// nothing for a JWKS URL (those keys refresh on their own).
func (j *JWT) Reload() error {
	if j.cfg.KeyFile == "" {
		return nil
	}
	data, err := os.ReadFile(j.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	f, err := parseKeys(data)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrConfig, j.cfg.KeyFile, err)
	}
	j.keys.Store(&f)
	return nil
}

// parseKeys reads PEM public keys or certificates, or a JWKS document.
func parseKeys(data []byte) (jwt.Keyfunc, error) {
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '{' {
		kf, err := keyfunc.NewJWKSetJSON(json.RawMessage(t))
		if err != nil {
			return nil, err
		}
		if all, err := kf.Storage().KeyReadAll(context.Background()); err != nil || len(all) == 0 {
			return nil, errors.New("the JWKS holds no usable key")
		}
		return kf.Keyfunc, nil
	}
	var set jwt.VerificationKeySet
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var key any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
		}
		if err != nil {
			return nil, err
		}
		switch key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			return nil, fmt.Errorf("unsupported key type %T", key)
		}
		set.Keys = append(set.Keys, key)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("no PEM public key and not a JWKS")
	}
	return func(*jwt.Token) (any, error) { return set, nil }, nil
}

// claims are the parts of an access token the gateway reads.
type claims struct {
	jwt.RegisteredClaims
	Scope string    `json:"scope"` // RFC 9068: space-separated
	Scp   scopeList `json:"scp"`   // a common alternative: a list or a string
}

type scopeList []string

func (s *scopeList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = strings.Fields(one)
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// Verify validates a JWT access token: its signature (an accepted
// algorithm, a known key), iss, aud, exp (required), nbf and iat (with the
// clock skew), and a non-empty sub. The identity's principal is
// JWTPrincipalPrefix and the sub.
func (j *JWT) Verify(token []byte) (Identity, error) {
	kf := j.keys.Load()
	if kf == nil {
		return Identity{}, invalid("no verification keys", nil)
	}
	var c claims
	if _, err := j.parser.ParseWithClaims(string(token), &c, *kf); err != nil {
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) && !j.algAccepted(token) {
			return Identity{}, invalid("algorithm not accepted", err)
		}
		return Identity{}, classify(err)
	}
	if c.Subject == "" {
		return Identity{}, invalid("token has no subject", nil)
	}
	id := Identity{Principal: JWTPrincipalPrefix + c.Subject, Scopes: strings.Fields(c.Scope)}
	id.Scopes = append(id.Scopes, c.Scp...)
	if c.ExpiresAt != nil {
		id.Expiry = c.ExpiresAt.Time
	}
	return id, nil
}

// algAccepted reports whether a token's alg is one of the accepted ones
// (golang-jwt reports any other as a bad signature).
func (j *JWT) algAccepted(token []byte) bool {
	t, _, err := jwt.NewParser().ParseUnverified(string(token), jwt.MapClaims{})
	if err != nil {
		return false
	}
	alg, _ := t.Header["alg"].(string)
	for _, a := range j.cfg.Algorithms {
		if a == alg {
			return true
		}
	}
	return false
}

// classify turns a jwt error into a TokenError with a reason a client may
// see.
func classify(err error) error {
	for _, r := range []struct {
		err    error
		reason string
	}{
		{jwt.ErrTokenMalformed, "malformed token"},
		{jwt.ErrTokenExpired, "token expired"},
		{jwt.ErrTokenNotValidYet, "token not valid yet"},
		{jwt.ErrTokenUsedBeforeIssued, "token issued in the future"},
		{jwt.ErrTokenInvalidIssuer, "wrong issuer"},
		{jwt.ErrTokenInvalidAudience, "wrong audience"},
		{jwt.ErrTokenRequiredClaimMissing, "required claim missing"},
		{jwt.ErrTokenSignatureInvalid, "bad signature"},
		{jwt.ErrTokenUnverifiable, "unverifiable token (algorithm or key not accepted)"},
	} {
		if errors.Is(err, r.err) {
			return invalid(r.reason, err)
		}
	}
	return invalid("invalid token", err)
}

// Close stops the JWKS refresh and releases its connections. Idempotent.
func (j *JWT) Close() {
	j.closeOnce.Do(func() {
		if j.cancel != nil {
			j.cancel()
		}
		if j.transport != nil {
			j.transport.CloseIdleConnections()
		}
	})
}
