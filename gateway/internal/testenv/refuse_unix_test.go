//go:build unix

package testenv

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestRefusingAddr: a connection to RefusingAddr is refused at once, and
// nobody can listen there while the test runs.
func TestRefusingAddr(t *testing.T) {
	addr := RefusingAddr(t)
	_, err := net.DialTimeout("tcp", addr, 2*time.Second)
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		_ = ln.Close()
	}
	require.Error(t, err, "the port is held")
}
