// Package testenv starts real processes for integration tests: the gateway
// binary, the reference MCP server (go-sdk's everything-server), npm's
// server-everything and the load harness's mock upstream, on free loopback
// ports. Every process is stopped by t.Cleanup, and its stderr is printed
// when the test failed.
package testenv

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Env returns a required environment variable naming a tool, or fails the
// test with a hint to run it through make.
func Env(t testing.TB, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: run these tests with `make integration` or `make conformance`", name)
	}
	if _, err := os.Stat(v); err != nil {
		t.Fatalf("%s=%s: %v", name, v, err)
	}
	return v
}

// Proc is a child process started by a test.
type Proc struct {
	Name string
	URL  string // the endpoint it serves, e.g. http://127.0.0.1:41234/mcp
	// AdminURL is the gateway's admin listener (metrics, health, admin API),
	// e.g. http://127.0.0.1:41235; "" for other processes.
	AdminURL string
	Cmd      *exec.Cmd

	// mu guards stderr and wrote.
	mu     sync.Mutex
	stderr bytes.Buffer
	wrote  chan struct{} // closed and replaced on every stderr write
	done   chan struct{}
	err    error
}

type lockedWriter struct{ p *Proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if w.p.stderr.Len() < 4<<20 {
		w.p.stderr.Write(b)
	}
	close(w.p.wrote)
	w.p.wrote = make(chan struct{})
	return len(b), nil
}

// WaitStderr waits until the process wrote s to stderr, and reports whether
// it did before the process ended or d passed.
func (p *Proc) WaitStderr(s string, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		p.mu.Lock()
		found := strings.Contains(p.stderr.String(), s)
		wrote := p.wrote
		p.mu.Unlock()
		if found {
			return true
		}
		select {
		case <-wrote:
		case <-p.done:
			return strings.Contains(p.Stderr(), s)
		case <-timer.C:
			return false
		}
	}
}

// Stderr returns what the process wrote to stderr so far.
func (p *Proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits up to grace, then kills. It returns the exit error.
func (p *Proc) Stop(grace time.Duration) error {
	if !p.Exited() {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = p.Cmd.Process.Kill()
			<-p.done
		}
	}
	return p.err
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Wait waits for the process to end by itself, up to d.
func (p *Proc) Wait(d time.Duration) (error, bool) {
	select {
	case <-p.done:
		return p.err, true
	case <-time.After(d):
		return nil, false
	}
}

func start(t testing.TB, name string, cmd *exec.Cmd) *Proc {
	t.Helper()
	p := &Proc{Name: name, Cmd: cmd, done: make(chan struct{}), wrote: make(chan struct{})}
	cmd.Stderr = lockedWriter{p}
	return p
}

func (p *Proc) run(t testing.TB) {
	t.Helper()
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.Name, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("---- %s stderr ----\n%s", p.Name, tail(p.Stderr(), 8000))
		}
	})
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// StartListening starts a binary that prints "listening on <URL>" as its
// first stdout line (bin/gateway, bin/loadtest upstream) and returns once
// that line arrived.
func StartListening(t testing.TB, name, bin string, args ...string) *Proc {
	t.Helper()
	return startListening(t, name, bin, false, args...)
}

// startListening starts bin and reads its first stdout line, and with
// admin the second ("admin on <URL>", the gateway's admin listener).
func startListening(t testing.TB, name, bin string, admin bool, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, name, cmd)
	p.run(t)
	want := 1
	if admin {
		want = 2
	}
	lines := make(chan string, want)
	go func() {
		sc := bufio.NewScanner(out)
		for i := 0; i < want && sc.Scan(); i++ {
			lines <- sc.Text()
		}
		close(lines)
		// Keep draining so the child never blocks on a full pipe.
		for sc.Scan() {
		}
	}()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for i := 0; i < want; i++ {
		select {
		case line, ok := <-lines:
			prefix := "listening on "
			if i == 1 {
				prefix = "admin on "
			}
			if !ok || !strings.HasPrefix(line, prefix) {
				t.Fatalf("%s: unexpected stdout line %d %q; stderr:\n%s", name, i+1, line, p.Stderr())
			}
			if i == 0 {
				p.URL = strings.TrimSpace(strings.TrimPrefix(line, prefix))
			} else {
				p.AdminURL = strings.TrimSpace(strings.TrimPrefix(line, prefix))
			}
		case <-timeout.C:
			t.Fatalf("%s did not report its address; stderr:\n%s", name, p.Stderr())
		}
	}
	return p
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago, for programs that cannot report an OS-chosen port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// StartEverything starts the reference MCP server (go-sdk's conformance
// everything-server) on a free loopback port. stateful selects the session era.
func StartEverything(t testing.TB, bin string, stateful bool) *Proc {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		if p := StartEverythingAt(t, bin, FreeAddr(t), stateful); p != nil {
			return p
		}
	}
	t.Fatal("everything-server did not start")
	return nil
}

// StartEverythingAt starts the reference server on addr; nil if it did not
// come up (for example because the port is taken).
func StartEverythingAt(t testing.TB, bin, addr string, stateful bool) *Proc {
	t.Helper()
	cmd := exec.Command(bin, "-http="+addr, fmt.Sprintf("-stateless=%v", !stateful))
	p := start(t, "everything-server", cmd)
	p.run(t)
	if !waitTCP(addr, 10*time.Second, p) {
		_ = p.Stop(time.Second)
		return nil
	}
	p.URL = "http://" + addr + "/mcp"
	return p
}

func waitTCP(addr string, d time.Duration, p *Proc) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if p.Exited() {
			return false
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

//go:embed loopback.mjs
var loopbackPreload []byte

// StartServerEverything starts npm's @modelcontextprotocol/server-everything
// in streamableHttp mode (`node <entry> streamableHttp`, entry being the
// package's dist/index.js) on a free loopback port, and returns once it
// listens. The server serves /mcp on the port in $PORT (3001 without it) and
// says "MCP Streamable HTTP Server listening on port N" on stderr; it
// listens on every interface, so a preloaded module (loopback.mjs) narrows
// it to 127.0.0.1. Its stdout (a line per request) is discarded.
func StartServerEverything(t testing.TB, node, entry string) *Proc {
	t.Helper()
	return startServerEverything(t, node, entry, "streamableHttp", "listening on port ", "/mcp")
}

// StartServerEverythingSSE starts the same server in its legacy HTTP+SSE
// mode (`node <entry> sse`: GET /sse, POST /message?sessionId=...; it says
// "Server is running on port N"). Its URL is the SSE endpoint's.
func StartServerEverythingSSE(t testing.TB, node, entry string) *Proc {
	t.Helper()
	return startServerEverything(t, node, entry, "sse", "Server is running on port ", "/sse")
}

func startServerEverything(t testing.TB, node, entry, mode, ready, path string) *Proc {
	t.Helper()
	preload := filepath.Join(t.TempDir(), "loopback.mjs")
	if err := os.WriteFile(preload, loopbackPreload, 0o644); err != nil {
		t.Fatal(err)
	}
	for attempt := 0; attempt < 5; attempt++ {
		addr := FreeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		cmd := exec.Command(node, "--import", "file://"+preload, entry, mode)
		cmd.Env = append(os.Environ(), "PORT="+port)
		p := start(t, "server-everything", cmd)
		p.run(t)
		if p.WaitStderr(ready+port, 20*time.Second) && !p.Exited() {
			p.URL = "http://" + addr + path
			return p
		}
		_ = p.Stop(time.Second) // the port was taken meanwhile, or it failed: try again
	}
	t.Fatal("server-everything did not start")
	return nil
}

// StartGateway starts bin/gateway in front of upstreamURL with extra flags.
// Its admin listener takes a free port (-admin-listen 127.0.0.1:0, so
// gateways of parallel tests never collide); Proc.AdminURL names it, unless
// flags turn it off with -admin-listen "".
func StartGateway(t testing.TB, bin, upstreamURL string, flags ...string) *Proc {
	t.Helper()
	args := append([]string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-upstream", upstreamURL, "-log-level", "debug"}, flags...)
	return startListening(t, "gateway", bin, adminOn(args), args...)
}

// adminOn reports whether the last -admin-listen of args names an address.
func adminOn(args []string) bool {
	on := true
	for i, a := range args {
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "admin-listen" {
			continue
		}
		if !hasVal && i+1 < len(args) {
			val = args[i+1]
		}
		on = val != ""
	}
	return on
}

// Buffer is a bytes.Buffer safe for one writer and readers on other
// goroutines (a child's stderr, a server's log).
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
