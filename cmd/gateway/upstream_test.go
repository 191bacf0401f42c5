package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

func TestInvalidUpstreamFlagsNameTheFlag(t *testing.T) {
	stdio := []string{"-upstream", "stdio:/bin/cat"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-upstream", "stdio:"}, "-upstream stdio: needs a command"},
		{[]string{"-upstream", "stdio:   "}, "-upstream stdio: needs a command"},
		{[]string{"-upstream", "stdio:/nonexistent/server"}, "-upstream stdio"},
		{[]string{"-upstream", "stdio:no-such-mcp-server-anywhere"}, "not found in PATH"},
		{[]string{"-upstream", `stdio:/bin/cat "unterminated`}, "-upstream stdio: unterminated"},
		{[]string{"-upstream", "sse+ftp://x/sse"}, "-upstream"},
		{[]string{"-upstream", "sse+http://"}, "-upstream"},
		{append([]string{"-upstream-env", "NOEQUALS"}, stdio...), "-upstream-env"},
		{append([]string{"-upstream-env", "1X=y"}, stdio...), "-upstream-env"},
		{append([]string{"-upstream-dir", "/nonexistent/dir"}, stdio...), "-upstream-dir"},
		{append([]string{"-upstream-dir", "upstream_test.go"}, stdio...), "-upstream-dir"},
		{append([]string{"-upstream-kill-grace", "0s"}, stdio...), "-upstream-kill-grace"},
		{append([]string{"-max-processes", "0"}, stdio...), "-max-processes"},
		{append([]string{"-max-message", "0"}, stdio...), "-max-message"},
		{append([]string{"-max-message", "lots"}, stdio...), "max-message"},
		{[]string{"-upstream", "http://127.0.0.1:1/mcp", "-max-processes", "5"}, "-max-processes only apply to a stdio: upstream"},
		{[]string{"-upstream", "sse+http://127.0.0.1:1/sse", "-upstream-env", "A=b", "-upstream-dir", "."}, "-upstream-env, -upstream-dir only apply"},
	} {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		assert.NotZero(t, code, "%v", c.args)
		assert.Contains(t, errb.String(), c.want, "%v", c.args)
	}
}

func TestSplitCommand(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"server", []string{"server"}},
		{"  /usr/bin/server  --a b\t-c  ", []string{"/usr/bin/server", "--a", "b", "-c"}},
		{`node 'my dir/index.js' --name "a \"b\" \$HOME" plain\ space`, []string{"node", "my dir/index.js", "--name", `a "b" $HOME`, "plain space"}},
		{`x '' ""`, []string{"x", "", ""}},
		{`a"b"'c'd`, []string{"abcd"}},
		{`x "keep \n as is"`, []string{"x", `keep \n as is`}},
		{`$HOME ~ *`, []string{"$HOME", "~", "*"}}, // no expansion
		{"", nil},
	} {
		got, err := splitCommand(c.in)
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got, c.in)
	}
	for _, in := range []string{`'open`, `"open`, `trailing\`} {
		_, err := splitCommand(in)
		assert.Error(t, err, in)
	}
}

// TestChildEnv: a stdio upstream's process gets PATH, HOME, LANG and the
// -upstream-env entries, nothing else of the gateway's environment.
func TestChildEnv(t *testing.T) {
	gw := map[string]string{"PATH": "/usr/bin", "HOME": "/home/g", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "MCPGATE_RING_SIZE": "512"}
	lookup := func(k string) (string, bool) { v, ok := gw[k]; return v, ok }
	env := childEnv(lookup, []string{"API_URL=http://x", "HOME=/srv", "EMPTY="})
	assert.Equal(t, []string{"PATH=/usr/bin", "HOME=/srv", "API_URL=http://x", "EMPTY="}, env)
	assert.NotContains(t, strings.Join(env, "\n"), "s3cr3t")
	assert.Equal(t, "/usr/bin", envValue(env, "PATH"))
	assert.Empty(t, childEnv(func(string) (string, bool) { return "", false }, nil))
}

func TestEnvListTwin(t *testing.T) {
	t.Setenv("MCPGATE_UPSTREAM_ENV", "A=1\nB=two words\n")
	var o options
	fs := newFlagSet(&o, &bytes.Buffer{})
	require.NoError(t, applyEnv(fs))
	require.NoError(t, fs.Parse([]string{"-upstream-env", "C=3"}))
	assert.Equal(t, envList{"A=1", "B=two words", "C=3"}, o.upstreamEnv)
}

// TestStdioUpstreamFromFlags builds a stdio transport from flags and runs
// a shell one-liner server through it: quoting, -upstream-env and
// -upstream-dir reach the process, and nothing else of the environment.
func TestStdioUpstreamFromFlags(t *testing.T) {
	t.Setenv("MCPGATE_TEST_SECRET", "hunter2")
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "marker"), []byte("here"), 0o600))
	script := `read -r line; printf '{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"%s %s %s","version":"1"}}}\n' "$GREETING" "$(cat marker)" "${MCPGATE_TEST_SECRET:-none}"; cat >/dev/null`
	var o options
	require.NoError(t, newFlagSet(&o, &bytes.Buffer{}).Parse([]string{
		"-upstream", "stdio:sh -c '" + strings.ReplaceAll(script, "'", `'\''`) + "'",
		"-upstream-env", "GREETING=hello world",
		"-upstream-dir", dir,
		"-upstream-kill-grace", "2s",
		"-max-processes", "3",
	}))
	cfg, err := o.config(nil)
	require.NoError(t, err)
	defer cfg.Upstream.Close()
	require.IsType(t, &upstream.Stdio{}, cfg.Upstream)
	s, answer, err := cfg.Upstream.Connect(context.Background(),
		[]byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
	require.NoError(t, err)
	require.NotNil(t, s, "%s", answer)
	assert.Contains(t, string(answer), `"name":"hello world here none"`)
	require.NoError(t, s.Close(context.Background()))
}

func TestLegacyUpstreamFromFlags(t *testing.T) {
	var o options
	require.NoError(t, newFlagSet(&o, &bytes.Buffer{}).Parse([]string{"-upstream", "sse+http://127.0.0.1:1/sse"}))
	cfg, err := o.config(nil)
	require.NoError(t, err)
	defer cfg.Upstream.Close()
	assert.IsType(t, &upstream.LegacySSE{}, cfg.Upstream)
}

// TestStdioUpstreamRelativeDir: a relative -upstream-dir with a program
// named relative to it (as findProgram checks it) starts: the child, which
// runs in that directory, must not resolve the path from there once more.
func TestStdioUpstreamRelativeDir(t *testing.T) {
	t.Chdir(t.TempDir())
	require.NoError(t, os.Mkdir("srv", 0o755))
	script := "#!/bin/sh\nread -r line\nprintf '%s\\n' '{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},\"serverInfo\":{\"name\":\"rel\",\"version\":\"1\"}}}'\ncat >/dev/null\n"
	require.NoError(t, os.WriteFile(filepath.Join("srv", "server"), []byte(script), 0o755))
	var o options
	require.NoError(t, newFlagSet(&o, &bytes.Buffer{}).Parse([]string{
		"-upstream", "stdio:./server",
		"-upstream-dir", "srv",
		"-upstream-kill-grace", "2s",
	}))
	cfg, err := o.config(nil)
	require.NoError(t, err)
	defer cfg.Upstream.Close()
	s, answer, err := cfg.Upstream.Connect(context.Background(),
		[]byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
	require.NoError(t, err, "the program config accepted must start")
	require.NotNil(t, s, "%s", answer)
	assert.Contains(t, string(answer), `"name":"rel"`)
	require.NoError(t, s.Close(context.Background()))
}
