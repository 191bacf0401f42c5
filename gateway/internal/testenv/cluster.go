package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// StartNATS starts a NATS server with JetStream (the nats-server binary
// built from github.com/nats-io/nats-server/v2) on a free loopback port,
// storing JetStream data in a temporary folder, and returns once it accepts
// connections. Proc.URL is its nats:// URL.
func StartNATS(t testing.TB, bin string) *Proc {
	t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		addr := FreeAddr(t)
		host, port, _ := strings.Cut(addr, ":")
		cmd := exec.Command(bin, "-js", "-a", host, "-p", port, "-sd", t.TempDir(), "--http_port", "0")
		p := start(t, "nats-server", cmd)
		p.run(t)
		if waitTCP(addr, 20*time.Second, p) {
			p.URL = "nats://" + addr
			return p
		}
		_ = p.Stop(time.Second)
	}
	t.Fatal("nats-server did not come up")
	return nil
}

// HAProxy is a round-robin HTTP load balancer without stickiness in front
// of some backends: every request may go to another backend.
type HAProxy struct {
	*Proc
	Addr string // host:port clients connect to
}

// StartHAProxy starts Debian's haproxy in HTTP mode, balancing requests
// round-robin over backends (host:port) without stickiness: each request
// is balanced on its own, also on a kept-alive client connection. A
// backend that refuses connections is marked down by a TCP check every
// 250 ms (two failures), and a request that could not connect is sent to
// another backend. Streams may stay open for 10 minutes; small writes
// (SSE events) are forwarded at once (option http-no-delay).
func StartHAProxy(t testing.TB, bin string, backends []string) *HAProxy {
	t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		addr := FreeAddr(t)
		var b strings.Builder
		fmt.Fprintf(&b, `global
    maxconn 8000
defaults
    mode http
    timeout connect 2s
    timeout client 600s
    timeout server 600s
    timeout http-keep-alive 60s
    retries 3
    option redispatch 1
    # SSE events are small: send them at once (without it, haproxy holds
    # the first bytes of a stream back for 200 ms).
    option http-no-delay
frontend mcp
    bind %s
    default_backend gateways
backend gateways
    balance roundrobin
`, addr)
		for i, be := range backends {
			fmt.Fprintf(&b, "    server n%d %s check inter 250ms fall 2 rise 2\n", i+1, be)
		}
		cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
		if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-db", "-f", cfg)
		p := start(t, "haproxy", cmd)
		p.run(t)
		if waitTCP(addr, 20*time.Second, p) {
			p.URL = "http://" + addr + "/mcp"
			return &HAProxy{Proc: p, Addr: addr}
		}
		_ = p.Stop(time.Second)
	}
	t.Fatal("haproxy did not come up")
	return nil
}
