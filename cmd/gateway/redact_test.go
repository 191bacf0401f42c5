package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNoCredentialsInLogs: credentials in the -upstream URL (Basic auth:
// user:password@) and in the -cluster URLs (user:password@, token@), which
// NATS and the upstream transport both honour, never reach a log line or
// an error message.
func TestNoCredentialsInLogs(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusMethodNotAllowed)
	}))
	defer up.Close()
	upURL := strings.Replace(up.URL, "http://", "http://alice:upstream-s3cret@", 1) + "/mcp"
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), Username: "gw", Password: "nats-s3cret"})
	require.NoError(t, err)
	go ns.Start() // Shutdown stops it
	require.True(t, ns.ReadyForConnections(10*time.Second))
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	natsURL := "nats://gw:nats-s3cret@" + ns.Addr().(*net.TCPAddr).String()
	secrets := []string{"upstream-s3cret", "nats-s3cret", "n0des-t0ken"}

	t.Run("refused at start", func(t *testing.T) {
		for _, urls := range []string{"nats://gw:nats-s3cret@127.0.0.1:1", "nats://n0des-t0ken@127.0.0.1:1,nats://gw:nats-s3cret@127.0.0.1:1"} {
			var errb bytes.Buffer
			assert.Equal(t, 2, run([]string{"-upstream", upURL, "-cluster", urls}, io.Discard, &errb))
			assert.Contains(t, errb.String(), "127.0.0.1:1", "the error still names the servers")
			for _, s := range secrets {
				assert.NotContains(t, errb.String(), s)
			}
		}
	})

	t.Run("running", func(t *testing.T) {
		var errb bytes.Buffer
		pr, pw := io.Pipe()
		done := make(chan int, 1)
		go func() {
			done <- run([]string{"-listen", "127.0.0.1:0", "-admin-listen", "", "-drain-window", "0",
				"-upstream", upURL, "-cluster", natsURL, "-cluster-replicas", "1", "-log-level", "debug"}, pw, &errb)
			_ = pw.Close()
		}()
		line, err := bufio.NewReader(pr).ReadString('\n')
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(line, "listening on "), line)
		go func() { _, _ = io.Copy(io.Discard, pr) }()
		require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
		select {
		case code := <-done:
			assert.Equal(t, 0, code)
		case <-time.After(30 * time.Second):
			t.Fatal("no exit after SIGTERM")
		}
		logs := errb.String()
		assert.Contains(t, logs, "gateway started")
		assert.Contains(t, logs, "cluster node joined")
		assert.Contains(t, logs, strconv.Itoa(ns.Addr().(*net.TCPAddr).Port), "the logs still name the servers")
		for _, s := range secrets {
			assert.NotContains(t, logs, s)
		}
	})
}

// TestEnvSecretsNotEchoed: a mistake in one line of MCPGATE_UPSTREAM_ENV
// (where a stdio upstream's secrets go) is refused naming the variable and
// the bad entry's name, without the values of any line.
func TestEnvSecretsNotEchoed(t *testing.T) {
	t.Setenv("MCPGATE_UPSTREAM_ENV", "API_KEY=env-s3cret\nBAD-NAME=other-s3cret\n")
	var errb bytes.Buffer
	assert.Equal(t, 2, run([]string{"-upstream", "stdio:/bin/true"}, io.Discard, &errb))
	assert.Contains(t, errb.String(), "MCPGATE_UPSTREAM_ENV")
	assert.Contains(t, errb.String(), "BAD-NAME", "the bad entry is named")
	assert.NotContains(t, errb.String(), "s3cret")

	t.Setenv("MCPGATE_UPSTREAM_ENV", "bare-s3cret-without-a-name")
	errb.Reset()
	assert.Equal(t, 2, run([]string{"-upstream", "stdio:/bin/true"}, io.Discard, &errb))
	assert.Contains(t, errb.String(), "MCPGATE_UPSTREAM_ENV")
	assert.NotContains(t, errb.String(), "s3cret")
}
