package auth

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: a JWT's
// JWKS refresh must end with Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
