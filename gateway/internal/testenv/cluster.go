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

// Backend is one server behind HAProxy: the address it serves on, and the
// address of its readiness check (a gateway's admin listener, checked with
// GET /readyz); "" checks that Addr accepts connections.
type Backend struct {
	Addr  string
	Ready string
}

// StartHAProxy starts Debian's haproxy in HTTP mode, balancing requests
// round-robin over backends without stickiness: each request is balanced
// on its own, also on a kept-alive client connection. Every 250 ms each
// backend's readiness is checked (GET /readyz on its admin listener, or a
// TCP connect); one failed check takes it out (a draining gateway, a dead
// one), two good ones bring it back, and a request that could not connect
// is sent to another backend. Streams may stay open for 10 minutes; small
// writes (SSE events) are forwarded at once (option http-no-delay).
func StartHAProxy(t testing.TB, bin string, backends []Backend) *HAProxy {
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
		if len(backends) > 0 && backends[0].Ready != "" {
			b.WriteString("    option httpchk\n    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host 127.0.0.1\n    http-check expect status 200\n")
		}
		for i, be := range backends {
			fmt.Fprintf(&b, "    server n%d %s check inter 250ms fall 1 rise 2", i+1, be.Addr)
			if be.Ready != "" {
				host, port, _ := strings.Cut(be.Ready, ":")
				fmt.Fprintf(&b, " addr %s port %s", host, port)
			}
			b.WriteString("\n")
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
