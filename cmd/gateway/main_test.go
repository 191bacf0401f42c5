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
	for _, in := range []string{"", "x", "-1", "1.5MiB", "99999999999GiB"} {
		var b byteSize
		assert.Error(t, b.Set(in), in)
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
		"-max-processes", "-max-message", "-legacy-sse-path", "-legacy-message-path", "stdio:", "sse+http", "MCPGATE_"} {
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
