package main

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSIGHUPWithoutAuthentication: SIGHUP reloads the authentication files;
// a gateway without them (authentication off) must not die of it, which
// is SIGHUP's default action: no drain, no state file, every session lost.
// The gateway runs in a child process (this test binary again), so the
// signal cannot take the test down.
func TestSIGHUPWithoutAuthentication(t *testing.T) {
	if args := os.Getenv("MCPGATE_TEST_HUP_CHILD"); args != "" {
		os.Exit(run(strings.Split(args, "\n"), os.Stdout, os.Stderr))
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusMethodNotAllowed)
	}))
	defer up.Close()
	state := filepath.Join(t.TempDir(), "state")
	args := []string{"-listen", "127.0.0.1:0", "-admin-listen", "", "-drain-window", "0", "-state-file", state,
		"-upstream", up.URL + "/mcp", "-log-level", "error"}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGHUPWithoutAuthentication$")
	cmd.Env = append(os.Environ(), "MCPGATE_TEST_HUP_CHILD="+strings.Join(args, "\n"))
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "listening on "), line)

	require.NoError(t, cmd.Process.Signal(syscall.SIGHUP))
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM), "the gateway is still running after SIGHUP")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		assert.NoError(t, err, "an orderly exit after SIGTERM, not death by SIGHUP")
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	_, err = os.Stat(state)
	assert.NoError(t, err, "the orderly shutdown wrote the state file")
}
