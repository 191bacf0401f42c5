package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
)

func TestLegacyEndpointFlags(t *testing.T) {
	parse := func(args ...string) gateway.Config {
		t.Helper()
		var o options
		fs := newFlagSet(&o, &bytes.Buffer{})
		require.NoError(t, applyEnv(fs))
		require.NoError(t, fs.Parse(append([]string{"-upstream", "http://127.0.0.1:1/mcp"}, args...)))
		cfg, err := o.config(nil)
		require.NoError(t, err)
		return cfg
	}
	cfg := parse()
	assert.False(t, cfg.LegacySSEOff, "served by default")
	assert.Equal(t, "/sse", cfg.LegacySSEPath)
	assert.Equal(t, "/messages", cfg.LegacyMessagePath)

	cfg = parse("-legacy-sse-path", "/events", "-legacy-message-path", "/post")
	assert.Equal(t, "/events", cfg.LegacySSEPath)
	assert.Equal(t, "/post", cfg.LegacyMessagePath)

	cfg = parse("-legacy-sse-path", "")
	assert.True(t, cfg.LegacySSEOff, "empty turns the legacy endpoints off")

	t.Setenv("MCPGATE_LEGACY_SSE_PATH", "")
	assert.True(t, parse().LegacySSEOff, "the environment twin too")
	t.Setenv("MCPGATE_LEGACY_SSE_PATH", "/old")
	t.Setenv("MCPGATE_LEGACY_MESSAGE_PATH", "/old/messages")
	cfg = parse()
	assert.Equal(t, "/old", cfg.LegacySSEPath)
	assert.Equal(t, "/old/messages", cfg.LegacyMessagePath)
	assert.Equal(t, "/cli", parse("-legacy-sse-path", "/cli").LegacySSEPath, "the command line wins")
}
