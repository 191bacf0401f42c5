package testenv

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the relay's goroutines end with it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
