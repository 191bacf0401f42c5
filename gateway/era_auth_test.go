package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// TestEraDetectionNotFixedByAuthRefusal: a stateless-only upstream that
// requires a credential, behind -upstream-auth forward. The gateway's own
// server/discover carries no client's credential and meets a 401: that
// says nothing about the upstream's eras, and must not fix it as a
// session-era server for the life of the process (every session-era
// client's initialize then goes upstream as it is and is refused). A
// client's request, with its credential, finds the eras out.
func TestEraDetectionNotFixedByAuthRefusal(t *testing.T) {
	var discovers atomic.Int32
	us := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer ok" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"unauthorized"}}`)
			return
		}
		if strings.Contains(string(body), `"method":"server/discover"`) {
			discovers.Add(1)
			_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":0,"result":{"resultType":"complete","supportedVersions":["`+statelessVersion+`"],"capabilities":{"tools":{}}}}`)
			return
		}
		w.WriteHeader(http.StatusNotFound) // initialize: not part of the revision
		_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}`)
	}))
	t.Cleanup(us.Close)
	tr, err := upstream.NewHTTP(upstream.HTTPConfig{URL: us.URL + "/mcp", Timeout: 5 * time.Second,
		Auth: upstream.AuthHeader{Name: "Authorization", Forward: true}})
	require.NoError(t, err)
	s, err := New(Config{Upstream: tr, ForwardAuthorization: true, DrainWindow: -1})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	s.Upstreams(context.Background()) // the start's detection: no credential, 401
	s.eras.mu.Lock()
	s.eras.failed = time.Time{} // as if eraProbeRetry had passed
	s.eras.mu.Unlock()

	ctx := scriptDo(s, fasthttp.MethodPost, "", "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
		[2]string{"Authorization", "Bearer ok"})
	require.Equal(t, fasthttp.StatusOK, ctx.Response.StatusCode(), "%s", ctx.Response.Body())
	assert.Contains(t, string(ctx.Response.Body()), `"protocolVersion":"2025-06-18"`)
	_, _, era := s.Upstreams(context.Background())
	assert.Equal(t, "stateless (session clients bridged)", era)
	assert.Positive(t, discovers.Load())
}
