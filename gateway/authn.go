package gateway

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/auth"
	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// Authenticator validates bearer tokens. *auth.Verifier implements it.
type Authenticator interface {
	// Authenticate returns who a bearer token (the Authorization header's
	// value after "Bearer ") names, or an error wrapping
	// auth.ErrInvalidToken (an *auth.TokenError says why, in words a
	// client may see). It runs on the request path: safe for concurrent
	// use, and it must not block for long.
	Authenticate(token []byte) (auth.Identity, error)
}

// cachedTokens is implemented by an Authenticator that can tell a JWT it
// validated before without checking its signature again (auth.Verifier's
// cache). An address over its failed authentications' budget is still
// served with such a token: a guesser behind the same proxy or NAT does
// not lock out the users of the issuer's tokens, and gains nothing (a
// cached JWT cannot be guessed without the issuer's key).
type cachedTokens interface {
	Cached(token []byte) (auth.Identity, bool)
}

// caller is who sent a request: the principal its token names ("" when
// authentication is off) and, for anonymous callers, the client address
// their limits are kept by (clientKey).
type caller struct {
	principal string
	addr      netip.Addr
}

// limitKey is what sessions and requests are counted by: the principal, or
// the address of an anonymous caller.
func (c caller) owner() string {
	if c.principal != "" || !c.addr.IsValid() {
		return c.principal
	}
	return c.addr.String()
}

// wellKnownPRM is the RFC 9728 protected resource metadata path; the
// metadata is also served with the endpoint's path appended (section 3.1).
const wellKnownPRM = "/.well-known/oauth-protected-resource"

// authenticate decides who sent the request, answers it (401, 403, 429)
// when it must stop, and charges it to the caller's rate limit.
func (s *Server) authenticate(ctx *fasthttp.RequestCtx) (caller, bool) {
	var c caller
	if s.cfg.Authenticator == nil {
		if s.limits != nil || s.cfg.MaxSessionsPerPrincipal > 0 {
			c.addr, _ = clientKey(ctx.RemoteAddr())
		}
		return c, s.allowRate(ctx, c)
	}
	tok, ok := bearerToken(ctx.Request.Header.Peek("Authorization"))
	var id auth.Identity
	var err error
	if wait, throttled := s.authThrottled(ctx); throttled {
		// Only a JWT validated before is looked at (cachedTokens).
		ct, _ := s.cfg.Authenticator.(cachedTokens)
		if !ok || ct == nil {
			s.refuseThrottled(ctx, wait)
			return c, false
		}
		if id, ok = ct.Cached(tok); !ok {
			s.refuseThrottled(ctx, wait)
			return c, false
		}
	} else if !ok {
		s.authFailure(ctx)
		s.unauthorized(ctx, "", "")
		return c, false
	} else {
		id, err = s.cfg.Authenticator.Authenticate(tok)
	}
	if err != nil {
		s.authFailure(ctx)
		reason := "invalid token"
		if te := (*auth.TokenError)(nil); errors.As(err, &te) {
			reason = te.Reason
		}
		s.log.Debug("authentication failed", "err", err, "remote", ctx.RemoteAddr().String())
		s.unauthorized(ctx, "invalid_token", reason)
		return c, false
	}
	if !id.HasScopes(s.cfg.RequiredScopes) {
		s.metrics.authFailures.Add(1)
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+
			strings.Join(s.cfg.RequiredScopes, " ")+`", resource_metadata="`+s.metadataURL(ctx)+`"`)
		s.fail(ctx, fasthttp.StatusForbidden, nil, jsonrpc.CodeServerError, "Forbidden: the token lacks a required scope", nil)
		return c, false
	}
	c.principal = id.Principal
	return c, s.allowRate(ctx, c)
}

// authThrottled reports whether the client's address has spent its failed
// authentications (limits.go), and how long until it may fail again.
func (s *Server) authThrottled(ctx *fasthttp.RequestCtx) (time.Duration, bool) {
	if s.authFails == nil || s.authFails.n.Load() == 0 {
		return 0, false // no address over budget lately: not even the address is looked up
	}
	addr, ok := clientKey(ctx.RemoteAddr())
	blocked, wait := s.authBlocked("", addr, ok)
	return wait, blocked
}

// refuseThrottled answers 429 to a request from an address over its failed
// authentications' budget whose token was not judged (no signature
// checked): there is no challenge, the token may be valid.
func (s *Server) refuseThrottled(ctx *fasthttp.RequestCtx, wait time.Duration) {
	addr, _ := clientKey(ctx.RemoteAddr())
	s.authRefused("endpoint", addr, wait)
	retryAfter(&ctx.Response.Header, wait)
	s.fail(ctx, fasthttp.StatusTooManyRequests, nil, jsonrpc.CodeServerError,
		"Too Many Requests: too many failed authentications from this address", nil)
}

// authFailure counts a 401 and charges it to the client's address.
func (s *Server) authFailure(ctx *fasthttp.RequestCtx) {
	s.metrics.authFailures.Add(1)
	if s.authFails != nil {
		addr, ok := clientKey(ctx.RemoteAddr())
		s.authFailed("", addr, ok)
	}
}

// bearerToken returns the token of an Authorization header using the
// Bearer scheme (case-insensitive, RFC 6750 section 2.1).
func bearerToken(h []byte) ([]byte, bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !bytes.EqualFold(h[:len(scheme)], []byte(scheme)) {
		return nil, false
	}
	tok := bytes.TrimLeft(h[len(scheme):], " ")
	if len(tok) == 0 || bytes.IndexByte(tok, ' ') >= 0 {
		return nil, false
	}
	return tok, true
}

// unauthorized answers 401 with the challenge RFC 6750 and RFC 9728
// describe: the resource metadata's URL, and for a token that was
// presented, error and error_description.
func (s *Server) unauthorized(ctx *fasthttp.RequestCtx, code, desc string) {
	var b strings.Builder
	b.WriteString(`Bearer resource_metadata="`)
	b.WriteString(s.metadataURL(ctx))
	b.WriteByte('"')
	if len(s.cfg.RequiredScopes) > 0 {
		b.WriteString(`, scope="`)
		b.WriteString(strings.Join(s.cfg.RequiredScopes, " "))
		b.WriteByte('"')
	}
	if code != "" {
		b.WriteString(`, error="`)
		b.WriteString(code)
		b.WriteString(`", error_description="`)
		b.WriteString(strings.ReplaceAll(desc, `"`, `'`))
		b.WriteByte('"')
	}
	ctx.Response.Header.Set("WWW-Authenticate", b.String())
	msg := "Unauthorized: a bearer token is required"
	if code != "" {
		msg = "Unauthorized: " + desc
	}
	s.fail(ctx, fasthttp.StatusUnauthorized, nil, jsonrpc.CodeServerError, msg, nil)
}

// resourceURL is the endpoint's public URL: Config.ResourceURL, or the one
// the request was sent to.
func (s *Server) resourceURL(ctx *fasthttp.RequestCtx) string {
	if s.cfg.ResourceURL != "" {
		return s.cfg.ResourceURL
	}
	scheme := "http://"
	if ctx.IsTLS() {
		scheme = "https://"
	}
	return scheme + string(requestAuthority(ctx)) + s.cfg.Path
}

// metadataURL is where the protected resource metadata of the resource is
// (RFC 9728 section 3.1: the well-known path inserted before the
// resource's path).
func (s *Server) metadataURL(ctx *fasthttp.RequestCtx) string {
	res := s.resourceURL(ctx)
	scheme, rest, _ := strings.Cut(res, "://")
	host, path := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		host, path = rest[:i], rest[i:]
	}
	if path == "/" {
		path = ""
	}
	return scheme + "://" + host + wellKnownPRM + path
}

// requestAuthority is the authority the request was sent to: an absolute
// target's, else the Host header (admit checked both).
func requestAuthority(ctx *fasthttp.RequestCtx) []byte {
	if t := ctx.Request.Header.RequestURI(); len(t) > 0 && t[0] != '/' {
		if a, ok := absoluteAuthority(t); ok {
			return a
		}
	}
	return ctx.Request.Header.Host()
}

// serveMetadata answers the protected resource metadata paths (only when
// authentication is on); false for any other path.
func (s *Server) serveMetadata(ctx *fasthttp.RequestCtx) bool {
	if s.cfg.Authenticator == nil {
		return false
	}
	p := string(ctx.Path())
	if p != wellKnownPRM && p != wellKnownPRM+s.cfg.Path {
		return false
	}
	if !ctx.IsGet() {
		ctx.Response.Header.Set("Allow", "GET")
		s.fail(ctx, fasthttp.StatusMethodNotAllowed, nil, jsonrpc.CodeServerError, "Method Not Allowed", nil)
		return true
	}
	b := []byte(`{"resource":`)
	b = jsonrpc.AppendString(b, s.resourceURL(ctx))
	b = appendStrings(append(b, `,"authorization_servers":`...), s.cfg.AuthorizationServers)
	if len(s.cfg.RequiredScopes) > 0 {
		b = appendStrings(append(b, `,"scopes_supported":`...), s.cfg.RequiredScopes)
	}
	b = append(b, `,"bearer_methods_supported":["header"]}`...)
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "max-age=300")
	ctx.Response.SetBodyRaw(b)
	s.metrics.status(fasthttp.StatusOK)
	return true
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, v := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonrpc.AppendString(b, v)
	}
	return append(b, ']')
}

// ownsSession reports whether c may use sess: only the principal that
// created a session may, and anyone else is told it does not exist. A
// refusal is counted and logged (the session id shortened).
func (s *Server) ownsSession(sess *session, c caller) bool {
	return s.principalOwns(sess.id, sess.principal, c)
}

// principalOwns is ownsSession for a session known by its id and
// principal only (a cluster registry entry).
func (s *Server) principalOwns(id, principal string, c caller) bool {
	if principal == c.principal {
		return true
	}
	s.metrics.principalMismatches.Add(1)
	s.log.Warn("session used by another principal: answered as unknown", "session", shortID(id), "principal", c.principal)
	return false
}

// shortID shortens a session id for logs: enough to correlate, not enough
// to use.
func shortID(id string) string {
	if len(id) <= 8 {
		return id
	}
	return id[:8] + "…"
}

// upstreamCtx is the context a client request's upstream calls run under:
// with Config.ForwardAuthorization, it carries the client's Authorization
// header for the transport to forward.
func (s *Server) upstreamCtx(ctx *fasthttp.RequestCtx) context.Context {
	if !s.cfg.ForwardAuthorization {
		return context.Background()
	}
	return upstream.WithCredential(context.Background(), string(ctx.Request.Header.Peek("Authorization")))
}
