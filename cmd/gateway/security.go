package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/auth"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// securityOptions are the flags of authentication, upstream credentials
// and the limits on hostile or greedy clients.
type securityOptions struct {
	tokensFile     string
	jwksURL        string
	jwtKeyFile     string
	jwtIssuer      string
	jwtAudience    string
	jwtAlgorithms  string
	jwtClockSkew   time.Duration
	jwksRefresh    time.Duration
	authServers    string
	requiredScopes string
	resourceURL    string
	upstreamAuth   string

	maxPerPrincipal int
	rateLimit       float64
	rateBurst       int
	evictIdle       bool
	maxConnsPerIP   int
	authFailBurst   int
	authFailRate    float64
	maxHeaderBytes  byteSize
	maxHeaders      int
	readHeader      time.Duration
	readBody        time.Duration
}

func (o *securityOptions) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.tokensFile, "auth-tokens-file", "", "file of static bearer tokens, one \"token principal\" pair per line (# comments; a principal must not start with jwt:, which names JWT subjects); reloaded on SIGHUP. With it or JWT validation, every request needs a valid Authorization: Bearer token")
	fs.StringVar(&o.jwksURL, "jwt-jwks-url", "", "validate JWT access tokens against the authorization server's keys at this JWKS URL (fetched at start, every -jwt-jwks-refresh, and when a token names an unknown key, at most once a minute)")
	fs.StringVar(&o.jwtKeyFile, "jwt-key-file", "", "validate JWT access tokens against the public keys in this file (PEM or JWKS); reloaded on SIGHUP")
	fs.StringVar(&o.jwtIssuer, "jwt-issuer", "", "the iss a JWT must carry (required with -jwt-jwks-url or -jwt-key-file)")
	fs.StringVar(&o.jwtAudience, "jwt-audience", "", "comma-separated aud values a JWT must name one of, usually this gateway's resource URL (required with -jwt-jwks-url or -jwt-key-file)")
	fs.StringVar(&o.jwtAlgorithms, "jwt-algorithms", "", "comma-separated JWT signature algorithms accepted (default: "+strings.Join(auth.DefaultAlgorithms, ",")+"; HS* and none are never accepted)")
	fs.DurationVar(&o.jwtClockSkew, "jwt-clock-skew", auth.DefaultClockSkew, "leeway on a JWT's exp, nbf and iat (0 = none)")
	fs.DurationVar(&o.jwksRefresh, "jwt-jwks-refresh", auth.DefaultRefreshInterval, "how often the JWKS is fetched again")
	fs.StringVar(&o.authServers, "auth-server", "", "comma-separated issuer URLs of the authorization servers, listed in the protected resource metadata (/.well-known/oauth-protected-resource)")
	fs.StringVar(&o.requiredScopes, "required-scopes", "", "comma-separated scopes every token must grant (403 insufficient_scope otherwise); static tokens grant every scope")
	fs.StringVar(&o.resourceURL, "resource-url", "", "the endpoint's public URL, named in the protected resource metadata and the 401 challenge (default: http://<Host><path> of each request)")
	fs.StringVar(&o.upstreamAuth, "upstream-auth", "none", "credentials on upstream requests: none (client credentials never reach the upstream), static:<header>=<file> (the header with the value in file, e.g. static:Authorization=/etc/mcpgate/upstream-token), or forward (the client's own Authorization header; upstream sessions pooled for stateless clients are never shared across different headers)")
	fs.IntVar(&o.maxPerPrincipal, "max-sessions-per-principal", 0, "live sessions per principal (per client address without authentication); initialize beyond it gets 429 (0 = no limit)")
	fs.Float64Var(&o.rateLimit, "rate-limit", 0, "requests per second one principal (one client address without authentication) may make, on average; beyond it 429 with Retry-After (0 = no limit)")
	fs.IntVar(&o.rateBurst, "rate-burst", 0, "requests a principal may make at once before -rate-limit applies (default: -rate-limit rounded up)")
	fs.BoolVar(&o.evictIdle, "evict-idle", false, "at -max-sessions, end the least recently active session without a call in flight or a connected stream to make room (it then gets 404) instead of answering 503")
	fs.IntVar(&o.authFailBurst, "auth-failure-burst", gateway.DefaultAuthFailureBurst, "failed authentications (401, on the endpoint or the admin API) one client address (an IPv6 client's /64) may have in a row; past them its requests get 429 + Retry-After before any token check, even a valid token, until -auth-failure-rate gives one back (0 = no limit)")
	fs.Float64Var(&o.authFailRate, "auth-failure-rate", gateway.DefaultAuthFailureRate, "failed authentications per second given back to an address's -auth-failure-burst")
	fs.IntVar(&o.maxConnsPerIP, "max-conns-per-ip", 0, "open connections per client address (an IPv6 client's /64); beyond it 429 and the connection is closed (0 = no limit)")
	o.maxHeaderBytes = byteSize(gateway.DefaultMaxHeaderBytes)
	fs.Var(&o.maxHeaderBytes, "max-header-bytes", "largest request head (request line and headers), a `size`; larger gets 431")
	fs.IntVar(&o.maxHeaders, "max-headers", gateway.DefaultMaxHeaders, "most header fields in a request; more gets 431")
	fs.DurationVar(&o.readHeader, "read-header-timeout", gateway.DefaultReadHeaderTimeout, "time a client has to send a request's head (from the connection's start for its first); then 408")
	fs.DurationVar(&o.readBody, "read-body-timeout", gateway.DefaultReadBodyTimeout, "time a client has to send a request's body once its head is in; then 408")
}

// upstreamAuthHeader parses -upstream-auth.
func (o *securityOptions) upstreamAuthHeader() (upstream.AuthHeader, error) {
	spec := o.upstreamAuth
	switch {
	case spec == "" || spec == "none":
		return upstream.AuthHeader{}, nil
	case spec == "forward":
		return upstream.AuthHeader{Name: "Authorization", Forward: true}, nil
	case strings.HasPrefix(spec, "static:"):
		name, file, ok := strings.Cut(strings.TrimPrefix(spec, "static:"), "=")
		if !ok || name == "" || file == "" {
			break
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return upstream.AuthHeader{}, fmt.Errorf("-upstream-auth: %v", err)
		}
		h := upstream.AuthHeader{Name: name, Value: strings.TrimRight(string(b), "\r\n")}
		if h.Value == "" {
			return upstream.AuthHeader{}, fmt.Errorf("-upstream-auth: %s is empty", file)
		}
		if err := h.Validate(); err != nil {
			return upstream.AuthHeader{}, fmt.Errorf("-upstream-auth: %v", err)
		}
		return h, nil
	}
	return upstream.AuthHeader{}, fmt.Errorf("-upstream-auth %q: want none, static:<header>=<file> or forward", spec)
}

// apply checks the flags and sets the security fields of cfg; it builds the
// token verifier (which the caller closes, see closeAuth).
func (o *securityOptions) apply(cfg *gateway.Config, logger *slog.Logger) error {
	checks := []struct {
		name string
		bad  bool
	}{
		{"-max-sessions-per-principal must not be negative", o.maxPerPrincipal < 0},
		{"-rate-limit must be a non-negative number", !(o.rateLimit >= 0) || math.IsInf(o.rateLimit, 1)},
		{"-rate-burst must not be negative", o.rateBurst < 0},
		{"-rate-burst needs -rate-limit", o.rateBurst > 0 && o.rateLimit == 0},
		{"-max-conns-per-ip must not be negative", o.maxConnsPerIP < 0},
		{"-auth-failure-burst must not be negative", o.authFailBurst < 0},
		{"-auth-failure-rate must be a positive number", !(o.authFailRate > 0) || math.IsInf(o.authFailRate, 1)},
		{"-max-header-bytes must be between 1KiB and 1MiB (every connection allocates a read buffer of this size)", o.maxHeaderBytes < 1024 || o.maxHeaderBytes > 1<<20},
		{"-max-headers must be at least 1", o.maxHeaders < 1},
		{"-read-header-timeout must be positive", o.readHeader <= 0},
		{"-read-body-timeout must be positive", o.readBody <= 0},
		{"-jwt-clock-skew must not be negative", o.jwtClockSkew < 0},
		{"-jwt-jwks-refresh must be at least 1m (the JWKS is fetched that often)", o.jwksRefresh < auth.DefaultMinRefreshInterval},
		{"-jwt-jwks-url and -jwt-key-file are exclusive", o.jwksURL != "" && o.jwtKeyFile != ""},
	}
	for _, c := range checks {
		if c.bad {
			return errors.New(c.name)
		}
	}
	jwtOn := o.jwksURL != "" || o.jwtKeyFile != ""
	switch {
	case jwtOn && o.jwtIssuer == "":
		return errors.New("-jwt-issuer is required with -jwt-jwks-url or -jwt-key-file")
	case jwtOn && o.jwtAudience == "":
		return errors.New("-jwt-audience is required with -jwt-jwks-url or -jwt-key-file (a resource server accepts only tokens issued for it)")
	case !jwtOn && (o.jwtIssuer != "" || o.jwtAudience != "" || o.jwtAlgorithms != ""):
		return errors.New("-jwt-issuer, -jwt-audience and -jwt-algorithms need -jwt-jwks-url or -jwt-key-file")
	case !jwtOn && o.tokensFile == "" && (o.requiredScopes != "" || o.authServers != "" || o.resourceURL != ""):
		return errors.New("-required-scopes, -auth-server and -resource-url need authentication (-auth-tokens-file, -jwt-jwks-url or -jwt-key-file)")
	}
	cfg.MaxSessionsPerPrincipal = o.maxPerPrincipal
	cfg.RateLimit = o.rateLimit
	cfg.RateBurst = o.rateBurst
	cfg.EvictIdle = o.evictIdle
	cfg.MaxConnsPerIP = o.maxConnsPerIP
	cfg.AuthFailureBurst = o.authFailBurst
	if o.authFailBurst == 0 {
		cfg.AuthFailureBurst = -1 // the flag's 0 means no limit
	}
	cfg.AuthFailureRate = o.authFailRate
	cfg.MaxHeaderBytes = int(o.maxHeaderBytes)
	cfg.MaxHeaders = o.maxHeaders
	cfg.ReadHeaderTimeout = o.readHeader
	cfg.ReadBodyTimeout = o.readBody
	cfg.RequiredScopes = splitList(strings.ReplaceAll(o.requiredScopes, " ", ","))
	cfg.AuthorizationServers = splitList(o.authServers)
	cfg.ResourceURL = o.resourceURL
	cfg.ForwardAuthorization = o.upstreamAuth == "forward"
	if !jwtOn && o.tokensFile == "" {
		return nil
	}
	vc := auth.VerifierConfig{TokensFile: o.tokensFile}
	if jwtOn {
		skew := o.jwtClockSkew
		if skew == 0 {
			skew = -1 // the flag's 0 means none
		}
		vc.JWT = &auth.JWTConfig{
			JWKSURL:         o.jwksURL,
			KeyFile:         o.jwtKeyFile,
			Issuer:          o.jwtIssuer,
			Audience:        splitList(o.jwtAudience),
			Algorithms:      splitList(o.jwtAlgorithms),
			ClockSkew:       skew,
			RefreshInterval: o.jwksRefresh,
			Logger:          logger,
		}
	}
	v, err := auth.NewVerifier(vc)
	if err != nil {
		return fmt.Errorf("%s: %v", authFlags(o), err)
	}
	cfg.Authenticator = v
	return nil
}

// authFlags names the authentication flags in use, for errors.
func authFlags(o *securityOptions) string {
	var names []string
	for _, f := range []struct{ name, v string }{{"-auth-tokens-file", o.tokensFile}, {"-jwt-jwks-url", o.jwksURL}, {"-jwt-key-file", o.jwtKeyFile}} {
		if f.v != "" {
			names = append(names, f.name)
		}
	}
	return strings.Join(names, ", ")
}

// closeAuth stops what the verifier runs (the JWKS refresh).
func closeAuth(cfg gateway.Config) {
	if c, ok := cfg.Authenticator.(interface{ Close() }); ok {
		c.Close()
	}
}

// reloadOnHUP reloads the verifier's tokens file and key file on every
// SIGHUP until the returned stop function is called; stop waits for the
// goroutine to end. SIGHUP is caught even with nothing to reload: its
// default action would end the process at once, without the drain and
// without saving the sessions.
func reloadOnHUP(cfg gateway.Config, logger *slog.Logger) (stop func()) {
	r, ok := cfg.Authenticator.(interface{ Reload() error })
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if !ok {
					logger.Info("SIGHUP: nothing to reload (no -auth-tokens-file or -jwt-key-file)")
					continue
				}
				if err := r.Reload(); err != nil {
					logger.Error("reload on SIGHUP failed: kept what could not be read", "err", err)
					continue
				}
				if v, ok := cfg.Authenticator.(*auth.Verifier); ok {
					logger.Info("reloaded on SIGHUP", "static_tokens", v.StaticTokens())
				}
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		wg.Wait()
	}
}

// logSecurity says at start how clients are authenticated and limited.
func logSecurity(logger *slog.Logger, cfg gateway.Config, o *securityOptions) {
	if cfg.Authenticator == nil {
		logger.Info("authentication off: every client is anonymous")
	} else {
		attrs := []any{"tokens_file", o.tokensFile != "", "jwt", o.jwksURL != "" || o.jwtKeyFile != ""}
		if v, ok := cfg.Authenticator.(*auth.Verifier); ok && o.tokensFile != "" {
			attrs = append(attrs, "static_tokens", v.StaticTokens())
		}
		if o.jwtIssuer != "" {
			attrs = append(attrs, "issuer", o.jwtIssuer)
		}
		logger.Info("authentication on: requests need a bearer token; sessions are bound to their principal", attrs...)
	}
	mode := o.upstreamAuth
	if mode == "" {
		mode = "none"
	}
	if i := strings.IndexByte(mode, '='); i >= 0 {
		mode = mode[:i] + "=<file>"
	}
	logger.Info("limits", "upstream_auth", mode, "max_sessions_per_principal", cfg.MaxSessionsPerPrincipal,
		"rate_limit", cfg.RateLimit, "evict_idle", cfg.EvictIdle, "max_conns_per_ip", cfg.MaxConnsPerIP,
		"auth_failure_burst", max(0, cfg.AuthFailureBurst), "auth_failure_rate", cfg.AuthFailureRate)
}
