//go:build !linux

package gateway

import (
	"net"
	"time"
)

// setUserTimeout is a no-op where TCP_USER_TIMEOUT does not exist: a
// half-open client is then found when its send buffer fills (the write-stall
// watchdog) or by the kernel's retransmission limit.
func setUserTimeout(net.Conn, time.Duration) {}
