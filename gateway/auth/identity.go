package auth

import (
	"errors"
	"time"
)

// JWTPrincipalPrefix starts the principal of every JWT: a JWT's principal
// is "jwt:" and its sub claim. The issuer's subjects and the operator's
// static token names are different namespaces, and a static token's
// principal never starts with it (ParseTokens refuses one that does), so a
// subject can never pass for a static token's principal, nor the other way
// round.
const JWTPrincipalPrefix = "jwt:"

// Identity is who a valid token names.
type Identity struct {
	// Principal names the client: a static token's principal as the
	// tokens file spells it, or JWTPrincipalPrefix and a JWT's sub claim.
	// Sessions, session caps and rate limits are keyed by it.
	Principal string
	// Scopes granted to the token (a JWT's scope or scp claim).
	Scopes []string
	// AllScopes: the token is trusted with every scope (a static token,
	// issued by the operator).
	AllScopes bool
	// Expiry is when the token stops being valid; zero = never.
	Expiry time.Time
}

// HasScopes reports whether every scope of required was granted.
func (id Identity) HasScopes(required []string) bool {
	if id.AllScopes {
		return true
	}
	for _, r := range required {
		found := false
		for _, s := range id.Scopes {
			if s == r {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

var (
	// ErrInvalidToken: the token is not one the Verifier accepts. Errors
	// from Authenticate wrap it, and a TokenError says why.
	ErrInvalidToken = errors.New("auth: invalid token")
	// ErrConfig: a configuration (file, key, option) is unusable.
	ErrConfig = errors.New("auth: invalid configuration")
)

// TokenError says why a token was refused. Reason is short and safe to show
// the client (the error_description of a 401).
type TokenError struct {
	Reason string
	Err    error // the underlying error, for logs
}

func (e *TokenError) Error() string {
	if e.Err != nil {
		return "auth: invalid token: " + e.Reason + ": " + e.Err.Error()
	}
	return "auth: invalid token: " + e.Reason
}

func (e *TokenError) Unwrap() []error { return []error{ErrInvalidToken, e.Err} }

func invalid(reason string, err error) error { return &TokenError{Reason: reason, Err: err} }
