package testenv

import "github.com/mcpgate/mcpgate/gateway/auth"

// TwoPrincipals authenticates the bearer tokens "alice-token" (principal
// alice) and "bob-token" (principal bob), with every scope; any other
// token is invalid. It lets a test tell two callers apart without JWTs.
type TwoPrincipals struct{}

// Authenticate implements the gateway's Authenticator.
func (TwoPrincipals) Authenticate(tok []byte) (auth.Identity, error) {
	switch string(tok) {
	case "alice-token":
		return auth.Identity{Principal: "alice", AllScopes: true}, nil
	case "bob-token":
		return auth.Identity{Principal: "bob", AllScopes: true}, nil
	}
	return auth.Identity{}, auth.ErrInvalidToken
}
