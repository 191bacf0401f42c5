package gateway_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// TestReadinessProbeCancelledIsNotCached: a /readyz whose caller hangs up
// while the upstream probe is under way must not leave "upstream
// unreachable" cached for the next callers (the probe result cache is for
// answers of the upstream, not for the caller's own cancellation).
func TestReadinessProbeCancelledIsNotCached(t *testing.T) {
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	defer ts.Close()
	// The upstream's address: its first connection is accepted and never
	// answered (a slow TLS handshake); later ones reach the TLS server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var n atomic.Int32
	held := make(chan net.Conn, 1)
	defer func() {
		select {
		case c := <-held:
			c.Close()
		default:
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if n.Add(1) == 1 {
				held <- c
				continue
			}
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", ts.Listener.Addr().String())
				if err != nil {
					return
				}
				defer b.Close()
				go func() { _, _ = io.Copy(b, c) }()
				_, _ = io.Copy(c, b)
			}()
		}
	}()
	tlsConf := ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	tr, err := upstream.NewHTTP(upstream.HTTPConfig{URL: "https://" + ln.Addr().String() + "/mcp", TLSConfig: tlsConf})
	require.NoError(t, err)
	s, err := gateway.New(gateway.Config{Upstream: tr, UpstreamEra: gateway.UpstreamEraSession, DrainWindow: -1})
	require.NoError(t, err)
	defer s.Shutdown(context.Background())

	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }() // the caller hangs up
	ok, _ := s.Ready(ctx)
	cancel()
	require.False(t, ok)

	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	ok, reasons := s.Ready(ctx2)
	assert.True(t, ok, "reasons: %s", strings.Join(reasons, "; "))
}
