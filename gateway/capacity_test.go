package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// fullTransport refuses every session as a stdio transport at
// -max-processes does.
type fullTransport struct{}

func (fullTransport) Connect(context.Context, []byte) (upstream.Session, []byte, error) {
	return nil, nil, fmt.Errorf("start: %w", upstream.ErrAtCapacity)
}
func (fullTransport) Close() error { return nil }

// TestInitializeAtUpstreamCapacity: an upstream at capacity is a temporary
// condition: 503 with Retry-After, not 502.
func TestInitializeAtUpstreamCapacity(t *testing.T) {
	s, err := New(Config{Upstream: fullTransport{}})
	require.NoError(t, err)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	}()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(fasthttp.MethodPost)
	ctx.Request.SetRequestURI("/mcp")
	ctx.Request.Header.SetHost("127.0.0.1")
	ctx.Request.Header.SetContentType("application/json")
	ctx.Request.Header.Set("Accept", "application/json, text/event-stream")
	ctx.Request.SetBodyString(`{"jsonrpc":"2.0","id":"init-1","method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	s.Handler(&ctx)
	assert.Equal(t, fasthttp.StatusServiceUnavailable, ctx.Response.StatusCode(), "%s", ctx.Response.Body())
	assert.NotEmpty(t, ctx.Response.Header.Peek("Retry-After"))
	assert.Contains(t, string(ctx.Response.Body()), `"id":"init-1"`)
}
