package gateway

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// TestHeaderValueRoundTrips: what the gateway puts in an upstream's
// Mcp-Name (upstream.HeaderValue, for the bridge and for stateless
// clients) must decode, by the revision's rule, to the name itself, or the
// upstream refuses the request (header mismatch). A plain value that looks
// like an encoded one (=?base64?...?=) must be encoded too.
func TestHeaderValueRoundTrips(t *testing.T) {
	for _, v := range []string{"get_weather", "a b", " lead", "trail ", "tab\there", "naïve", "line\nbreak",
		"=?base64?QQ==?=", "=?base64?not base64?="} {
		got, ok := decodeHeaderValue(upstream.HeaderValue(v))
		assert.True(t, ok, "%q encoded as %q does not decode", v, upstream.HeaderValue(v))
		assert.Equal(t, v, got, "encoded as %q", upstream.HeaderValue(v))
	}
}
