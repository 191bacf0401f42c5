package upstream

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
)

// AuthHeader is a header the HTTP transports (Streamable HTTP and legacy
// HTTP+SSE) add to every request they send upstream: POSTs, GET streams
// and the session's DELETE. The zero value adds nothing: a client's
// credentials never reach the upstream unless one is configured.
type AuthHeader struct {
	// Name of the header, for example Authorization; "" = none.
	Name string
	// Value is sent as it is, unless Forward.
	Value string
	// Forward sends the credential WithCredential put in the context of
	// the call (the client's own Authorization header, handed over by the
	// gateway) instead of Value. Requests the transport makes on its own
	// (a resumed stream, a re-opened SSE stream, the DELETE at a session's
	// end) carry the last credential the session forwarded. The session
	// pool (NewSessionPool) keys its sessions by the credential too, so a
	// pooled session only ever carries the one it was opened with.
	Forward bool
}

// Validate checks that the header can be sent: a token name (not one the
// transport sets itself) and a value without line breaks.
func (a AuthHeader) Validate() error {
	if a.Name == "" {
		if a.Value != "" || a.Forward {
			return errors.New("upstream: auth header without a name")
		}
		return nil
	}
	for i := 0; i < len(a.Name); i++ {
		c := a.Name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return errors.New("upstream: auth header name " + a.Name + " is not a token")
		}
	}
	switch strings.ToLower(a.Name) {
	case "host", "content-type", "content-length", "transfer-encoding", "connection", "accept",
		"mcp-session-id", "mcp-protocol-version", "last-event-id", "user-agent", "cache-control":
		return errors.New("upstream: auth header " + a.Name + " is one the transport sets itself")
	}
	if strings.ContainsAny(a.Value, "\r\n\x00") {
		return errors.New("upstream: auth header value contains a line break")
	}
	return nil
}

type credentialKey struct{}

// WithCredential returns ctx carrying a client's credential (the value of
// its Authorization header, "" for none), for a transport whose AuthHeader
// forwards. The session pool keeps requests with different credentials on
// different upstream sessions, so it must be set (even to "") exactly when
// the transport forwards.
func WithCredential(ctx context.Context, credential string) context.Context {
	return context.WithValue(ctx, credentialKey{}, credential)
}

// valueFor returns the header value for a request made under ctx. last is
// the session's last forwarded credential: set from ctx when it carries
// one, used when it does not.
func (a *AuthHeader) valueFor(ctx context.Context, last *atomic.Pointer[string]) (string, bool) {
	if a.Name == "" {
		return "", false
	}
	if !a.Forward {
		return a.Value, true
	}
	if ctx != nil {
		if c, ok := ctx.Value(credentialKey{}).(string); ok {
			if last != nil {
				if p := last.Load(); p == nil || *p != c {
					last.Store(&c)
				}
			}
			return c, c != "" && !strings.ContainsAny(c, "\r\n\x00")
		}
	}
	if last != nil {
		if p := last.Load(); p != nil {
			return *p, *p != "" && !strings.ContainsAny(*p, "\r\n\x00")
		}
	}
	return "", false
}
