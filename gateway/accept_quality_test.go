package gateway

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// TestAcceptQualityZeroIsNotAcceptable: a media range with q=0 means "not
// acceptable" (RFC 9110 section 12.4.2), and the most specific range that
// matches a type decides for it (section 12.5.1). A client that refuses
// text/event-stream that way must not be served an event stream.
func TestAcceptQualityZeroIsNotAcceptable(t *testing.T) {
	for _, c := range []struct {
		h         string
		json, sse bool
	}{
		{"application/json, text/event-stream;q=0", true, false},
		{"application/json;q=0, text/event-stream", false, true},
		{"application/json, text/event-stream; q=0.000", true, false},
		{"application/json, text/event-stream;Q=0.0", true, false},
		{"application/json, text/event-stream;q=0.001", true, true},
		{"*/*;q=0, application/json", true, false},
		{"text/*;q=0, text/event-stream", false, true},
		{"text/event-stream;q=0, text/*", false, false},
		{"text/event-stream;q=0, */*", true, false},
		{"application/json, text/event-stream", true, true},
	} {
		j, s := accepts([]byte(c.h))
		assert.Equal(t, c.json, j, "%q json", c.h)
		assert.Equal(t, c.sse, s, "%q sse", c.h)
	}

	// A GET stream asked for with SSE refused gets 406, not a stream.
	tr := &scriptTransport{version: "2025-06-18"}
	srv := newScriptServer(t, tr, Config{})
	sid := scriptInit(t, srv, "2025-06-18")
	ctx := scriptDo(srv, fasthttp.MethodGet, sid, "2025-06-18", "",
		[2]string{"Accept", ""}, [2]string{"Accept", "text/event-stream;q=0"})
	require.Equal(t, fasthttp.StatusNotAcceptable, ctx.Response.StatusCode(), "%s", ctx.Response.Body())
}
