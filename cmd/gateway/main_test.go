package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInvalidFlagsNameTheFlag(t *testing.T) {
	up := []string{"-upstream", "http://127.0.0.1:1/mcp"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "-upstream is required"},
		{[]string{"-upstream", "ftp://x"}, "-upstream"},
		{append([]string{"-shards", "0"}, up...), "-shards"},
		{append([]string{"-max-sessions", "-1"}, up...), "-max-sessions"},
		{append([]string{"-ring-size", "0"}, up...), "-ring-size"},
		{append([]string{"-ring-bytes", "12XB"}, up...), "ring-bytes"},
		{append([]string{"-drop-policy", "random"}, up...), "-drop-policy"},
		{append([]string{"-heartbeat", "-1s"}, up...), "-heartbeat"},
		{append([]string{"-session-idle-timeout", "0s"}, up...), "-session-idle-timeout"},
		{append([]string{"-log-level", "loud"}, up...), "-log-level"},
		{append([]string{"-log-format", "xml"}, up...), "-log-format"},
		{append([]string{"-path", "mcp"}, up...), "-path"},
		{append([]string{"-max-body", "0"}, up...), "-max-body"},
		{append([]string{"-listen", "256.0.0.1:99999"}, up...), "-listen"},
		{append([]string{"-upstream-ca", "/nonexistent/ca.pem"}, up...), "-upstream-ca"},
		{append([]string{"-upstream-ca", "main_test.go"}, up...), "-upstream-ca"},
		{append([]string{"-legacy-sse-path", "sse"}, up...), "-legacy-sse-path"},
		{append([]string{"-legacy-sse-path", "/mcp"}, up...), "-legacy-sse-path"},
		{append([]string{"-legacy-message-path", "/m?x=1"}, up...), "-legacy-message-path"},
		{append([]string{"-legacy-message-path", ""}, up...), "-legacy-message-path"},
		{append([]string{"-legacy-sse-path", "/x", "-legacy-message-path", "/x"}, up...), "-legacy-sse-path and -legacy-message-path"},
		{append([]string{"-auth-tokens-file", "/nonexistent/tokens"}, up...), "-auth-tokens-file"},
		{append([]string{"-auth-tokens-file", "main_test.go"}, up...), "-auth-tokens-file"},
		{append([]string{"-jwt-jwks-url", "http://127.0.0.1:1/jwks"}, up...), "-jwt-issuer"},
		{append([]string{"-jwt-jwks-url", "http://127.0.0.1:1/jwks", "-jwt-issuer", "https://i"}, up...), "-jwt-audience"},
		{append([]string{"-jwt-jwks-url", "http://x/jwks", "-jwt-key-file", "k.pem"}, up...), "-jwt-key-file are exclusive"},
		{append([]string{"-jwt-issuer", "https://i"}, up...), "-jwt-issuer"},
		{append([]string{"-jwt-key-file", "main_test.go", "-jwt-issuer", "https://i", "-jwt-audience", "a"}, up...), "-jwt-key-file"},
		{append([]string{"-jwt-key-file", "k.pem", "-jwt-issuer", "https://i", "-jwt-audience", "a", "-jwt-algorithms", "HS256"}, up...), "-jwt-key-file"},
		{append([]string{"-required-scopes", "mcp"}, up...), "-required-scopes"},
		{append([]string{"-upstream-auth", "basic"}, up...), "-upstream-auth"},
		{append([]string{"-upstream-auth", "static:Authorization=/nonexistent"}, up...), "-upstream-auth"},
		{append([]string{"-upstream-auth", "static:Bad Name=main_test.go"}, up...), "-upstream-auth"},
		{[]string{"-upstream", "stdio:/bin/true", "-upstream-auth", "forward"}, "-upstream-auth"},
		{append([]string{"-rate-limit", "-1"}, up...), "-rate-limit"},
		{append([]string{"-rate-burst", "5"}, up...), "-rate-burst"},
		{append([]string{"-max-sessions-per-principal", "-1"}, up...), "-max-sessions-per-principal"},
		{append([]string{"-max-conns-per-ip", "-1"}, up...), "-max-conns-per-ip"},
		{append([]string{"-auth-failure-burst", "-1"}, up...), "-auth-failure-burst"},
		{append([]string{"-auth-failure-rate", "0"}, up...), "-auth-failure-rate"},
		{append([]string{"-auth-failure-rate", "NaN"}, up...), "-auth-failure-rate"},
		{append([]string{"-max-header-bytes", "100"}, up...), "-max-header-bytes"},
		{append([]string{"-max-headers", "0"}, up...), "-max-headers"},
		{append([]string{"-read-header-timeout", "0s"}, up...), "-read-header-timeout"},
		{append([]string{"-read-body-timeout", "0s"}, up...), "-read-body-timeout"},
		{append([]string{"-jwt-clock-skew", "-1s"}, up...), "-jwt-clock-skew"},
		// Values that would start a gateway that misbehaves: a sweeper
		// waking every 250 ns (a core busy while idle), an endpoint no
		// request path can match, a ring too small for the error that
		// replaces an answer too large for it (the call went unanswered),
		// a read buffer of a GiB per connection, the JWKS fetched back to
		// back, every interface on a random port.
		{append([]string{"-heartbeat", "1us"}, up...), "-heartbeat"},
		{append([]string{"-heartbeat", "99ms"}, up...), "-heartbeat"},
		{append([]string{"-path", "/mcp?x"}, up...), "-path"},
		{append([]string{"-path", "/a#b"}, up...), "-path"},
		{append([]string{"-path", "/m cp"}, up...), "-path"},
		{append([]string{"-ring-bytes", "1B"}, up...), "-ring-bytes"},
		{append([]string{"-ring-bytes", "1023"}, up...), "-ring-bytes"},
		{append([]string{"-max-header-bytes", "1GiB"}, up...), "-max-header-bytes"},
		{append([]string{"-jwt-jwks-url", "http://127.0.0.1:1/jwks", "-jwt-issuer", "https://i", "-jwt-audience", "a", "-jwt-jwks-refresh", "1ns"}, up...), "-jwt-jwks-refresh"},
		{append([]string{"-listen", ""}, up...), "-listen"},
		{append([]string{"-whole-answer-window", "-5s"}, up...), "-whole-answer-window"},
		{append([]string{"-rate-limit", "NaN"}, up...), "-rate-limit"},
		{append([]string{"-rate-limit", "+Inf"}, up...), "-rate-limit"},
	} {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		assert.NotZero(t, code, "%v", c.args)
		assert.Contains(t, errb.String(), c.want, "%v", c.args)
	}
}

func TestEnvTwinsAndFlagPrecedence(t *testing.T) {
	t.Setenv("MCPGATE_RING_SIZE", "512")
	t.Setenv("MCPGATE_SESSION_IDLE_TIMEOUT", "90s")
	t.Setenv("MCPGATE_UPSTREAM", "http://127.0.0.1:1/mcp")
	var o options
	fs := newFlagSet(&o, &bytes.Buffer{})
	require.NoError(t, applyEnv(fs))
	require.NoError(t, fs.Parse([]string{"-ring-size", "1024"}))
	assert.Equal(t, 1024, o.ringSize, "the command line wins")
	assert.Equal(t, 90*time.Second, o.idleTimeout, "the environment sets what the command line does not")
	cfg, err := o.config(nil)
	require.NoError(t, err)
	assert.Equal(t, 1024, cfg.RingSize)

	t.Setenv("MCPGATE_SHARDS", "many")
	var o2 options
	err = applyEnv(newFlagSet(&o2, &bytes.Buffer{}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "MCPGATE_SHARDS")
	assert.Contains(t, err.Error(), "-shards")
}

func TestZeroMeansNoLimit(t *testing.T) {
	var o options
	fs := newFlagSet(&o, &bytes.Buffer{})
	require.NoError(t, fs.Parse([]string{"-upstream", "http://127.0.0.1:1/mcp", "-session-max-age", "0", "-heartbeat", "0"}))
	cfg, err := o.config(nil)
	require.NoError(t, err)
	assert.Negative(t, int64(cfg.SessionMaxAge))
	assert.Negative(t, int64(cfg.Heartbeat))
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int{"65536": 65536, "512KiB": 512 << 10, "4MiB": 4 << 20, "1GiB": 1 << 30, "10KB": 10000, "7B": 7} {
		var b byteSize
		require.NoError(t, b.Set(in), in)
		assert.Equal(t, want, int(b), in)
	}
	for _, in := range []string{"", "x", "-1", "1.5MiB", "99999999999GiB", "1TiB"} {
		var b byteSize
		err := b.Set(in)
		if assert.Error(t, err, in) {
			assert.Contains(t, err.Error(), `"`+in+`"`, "the error quotes the value as given")
		}
	}
}

// The size flags' help names their argument and says what it takes.
func TestSizeFlagsHelp(t *testing.T) {
	var o options
	var help bytes.Buffer
	fs := newFlagSet(&o, &help)
	fs.PrintDefaults()
	for _, name := range []string{"max-body", "ring-bytes", "max-message", "max-header-bytes", "stream-send-buffer"} {
		assert.Contains(t, help.String(), "-"+name+" size\n", "-%s", name)
	}
}

func TestHelpExplainsEveryFlag(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 0, run([]string{"-h"}, &out, &errb))
	for _, f := range []string{"-listen", "-path", "-upstream", "-shards", "-max-sessions", "-session-idle-timeout",
		"-session-max-age", "-max-streams-per-session", "-ring-size", "-ring-bytes", "-drop-policy", "-heartbeat",
		"-allowed-origins", "-allowed-hosts", "-max-body", "-upstream-max-conns", "-upstream-timeout",
		"-shutdown-timeout", "-log-level", "-log-format", "-stream-retention", "-write-stall-timeout",
		"-stream-max-connection", "-admin-listen", "-admin-token-file", "-drain-window", "-state-file", "-retry-hint", "-upstream-env", "-upstream-dir", "-upstream-kill-grace",
		"-max-processes", "-max-message", "-legacy-sse-path", "-legacy-message-path", "stdio:", "sse+http", "MCPGATE_",
		"-auth-tokens-file", "-jwt-jwks-url", "-jwt-key-file", "-jwt-issuer", "-jwt-audience", "-jwt-algorithms",
		"-jwt-clock-skew", "-jwt-jwks-refresh", "-auth-server", "-required-scopes", "-resource-url", "-upstream-auth",
		"-max-sessions-per-principal", "-rate-limit", "-rate-burst", "-evict-idle", "-max-conns-per-ip",
		"-auth-failure-burst", "-auth-failure-rate", "-max-header-bytes", "-max-headers", "-read-header-timeout", "-read-body-timeout", "SIGHUP"} {
		assert.Contains(t, errb.String(), f)
	}
}

// TestUpstreamCA: with -upstream-ca naming the upstream's CA, the gateway's
// transport completes an initialize over https; without it the handshake
// fails.
func TestUpstreamCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Mcp-Session-Id", "up-1")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}`)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	initialize := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)

	for _, trusted := range []bool{true, false} {
		args := []string{"-upstream", srv.URL + "/mcp"}
		if trusted {
			args = append(args, "-upstream-ca", ca)
		}
		var o options
		require.NoError(t, newFlagSet(&o, &bytes.Buffer{}).Parse(args))
		cfg, err := o.config(nil)
		require.NoError(t, err)
		s, _, err := cfg.Upstream.Connect(context.Background(), initialize)
		if trusted {
			require.NoError(t, err)
			assert.Equal(t, "up-1", s.ID())
		} else {
			assert.Error(t, err, "an unknown CA fails the handshake")
		}
		_ = cfg.Upstream.Close()
	}
}

// TestAdminListener: the binary's two stdout lines name the MCP endpoint
// and the admin listener; metrics, health and the admin API (with the
// token of -admin-token-file) are served there and not on the MCP
// listener; SIGTERM shuts down in order and stops the admin listener.
func TestAdminListener(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusMethodNotAllowed)
	}))
	defer up.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("  t0ken\n"), 0o600))
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-admin-token-file", tokenFile,
			"-drain-window", "0", "-upstream", up.URL + "/mcp", "-log-level", "error"}, pw, io.Discard)
		_ = pw.Close()
	}()
	br := bufio.NewReader(pr)
	first, err := br.ReadString('\n')
	require.NoError(t, err)
	second, err := br.ReadString('\n')
	require.NoError(t, err)
	go func() { _, _ = io.Copy(io.Discard, br) }()
	mcpURL, ok := strings.CutPrefix(strings.TrimSpace(first), "listening on ")
	require.True(t, ok, first)
	adminURL, ok := strings.CutPrefix(strings.TrimSpace(second), "admin on ")
	require.True(t, ok, second)

	get := func(url, token string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get(adminURL+"/metrics", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "mcpgate_sessions ")
	code, _ = get(adminURL+"/healthz", "")
	assert.Equal(t, http.StatusOK, code)
	code, _ = get(adminURL+"/admin/v1/config", "")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, body = get(adminURL+"/admin/v1/config", "t0ken")
	assert.Equal(t, http.StatusOK, code, "the token file's content, trimmed")
	assert.Contains(t, body, `"drain_window": "off"`)
	code, _ = get(strings.TrimSuffix(mcpURL, "/mcp")+"/metrics", "")
	assert.Equal(t, http.StatusNotFound, code, "no metrics on the MCP listener")

	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
	select {
	case code := <-done:
		assert.Equal(t, 0, code)
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	_, err = http.Get(adminURL + "/healthz")
	assert.Error(t, err, "the admin listener stopped")
}

func TestRemovedMetricsPath(t *testing.T) {
	var errb bytes.Buffer
	assert.Equal(t, 2, run([]string{"-upstream", "http://127.0.0.1:1/mcp", "--metrics-path=/m"}, io.Discard, &errb))
	assert.Contains(t, errb.String(), "-admin-listen")
	assert.False(t, removedFlag([]string{"-upstream", "x", "--", "-metrics-path"}))
}

func TestAdminTokenFile(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, []byte(" \n"), 0o600))
	for _, f := range []string{empty, "/nonexistent/token"} {
		var errb bytes.Buffer
		assert.Equal(t, 2, run([]string{"-upstream", "http://127.0.0.1:1/mcp", "-admin-token-file", f}, io.Discard, &errb))
		assert.Contains(t, errb.String(), "-admin-token-file", f)
	}
}

// TestSecurityFlags: the flags reach gateway.Config, the verifier and the
// upstream's credential; their environment twins work too.
func TestSecurityFlags(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	require.NoError(t, os.WriteFile(tokens, []byte("a-static-token-0123456789 alice\n"), 0o600))
	cred := filepath.Join(dir, "cred")
	require.NoError(t, os.WriteFile(cred, []byte("Bearer upstream-secret\n"), 0o600))
	t.Setenv("MCPGATE_RATE_LIMIT", "20")
	var o options
	fs := newFlagSet(&o, &bytes.Buffer{})
	require.NoError(t, applyEnv(fs))
	require.NoError(t, fs.Parse([]string{"-upstream", "http://127.0.0.1:1/mcp", "-auth-tokens-file", tokens,
		"-required-scopes", "mcp tools", "-auth-server", "https://auth.example", "-upstream-auth", "static:Authorization=" + cred,
		"-max-sessions-per-principal", "3", "-evict-idle", "-max-conns-per-ip", "50", "-read-header-timeout", "2s",
		"-auth-failure-burst", "5", "-auth-failure-rate", "0.5"}))
	cfg, err := o.config(nil)
	require.NoError(t, err)
	defer closeAuth(cfg)
	require.NotNil(t, cfg.Authenticator)
	id, err := cfg.Authenticator.Authenticate([]byte("a-static-token-0123456789"))
	require.NoError(t, err)
	assert.Equal(t, "alice", id.Principal)
	assert.Equal(t, []string{"mcp", "tools"}, cfg.RequiredScopes)
	assert.Equal(t, []string{"https://auth.example"}, cfg.AuthorizationServers)
	assert.Equal(t, 20.0, cfg.RateLimit)
	assert.Equal(t, 3, cfg.MaxSessionsPerPrincipal)
	assert.True(t, cfg.EvictIdle)
	assert.Equal(t, 50, cfg.MaxConnsPerIP)
	assert.Equal(t, 5, cfg.AuthFailureBurst)
	assert.Equal(t, 0.5, cfg.AuthFailureRate)
	assert.Equal(t, 2*time.Second, cfg.ReadHeaderTimeout)
	assert.False(t, cfg.ForwardAuthorization)
	h, err := o.upstreamAuthHeader()
	require.NoError(t, err)
	assert.Equal(t, "Authorization", h.Name)
	assert.Equal(t, "Bearer upstream-secret", h.Value, "the file's value, without its line end")
	_ = cfg.Upstream.Close()

	var o2 options
	require.NoError(t, newFlagSet(&o2, &bytes.Buffer{}).Parse([]string{"-upstream", "http://127.0.0.1:1/mcp"}))
	cfg2, err := o2.config(nil)
	require.NoError(t, err)
	assert.Nil(t, cfg2.Authenticator, "authentication is off by default")
	assert.Equal(t, 20, cfg2.AuthFailureBurst, "failed authentications are limited by default")
	assert.Equal(t, 1.0, cfg2.AuthFailureRate)
	var o3 options
	require.NoError(t, newFlagSet(&o3, &bytes.Buffer{}).Parse([]string{"-upstream", "http://127.0.0.1:1/mcp", "-auth-failure-burst", "0"}))
	cfg3, err := o3.config(nil)
	require.NoError(t, err)
	assert.Negative(t, cfg3.AuthFailureBurst, "the flag's 0 is no limit")
	_ = cfg3.Upstream.Close()
	h, err = o2.upstreamAuthHeader()
	require.NoError(t, err)
	assert.Empty(t, h.Name, "no upstream credential by default")
	_ = cfg2.Upstream.Close()
}
