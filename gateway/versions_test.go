package gateway

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestClientHopVersion(t *testing.T) {
	for _, c := range []struct {
		requested, upstream string
		served              []string
		want                string
	}{
		{"2025-11-25", "2025-11-25", supportedVersions, "2025-11-25"},                    // the hops agree
		{"2025-11-25", "2025-06-18", supportedVersions, "2025-06-18"},                    // the upstream's pick, served
		{"2025-06-18", "2024-11-05", supportedVersions, "2025-06-18"},                    // an old upstream: the client keeps its version
		{"2024-11-05", "2024-11-05", supportedVersions, "2025-11-25"},                    // neither served on Streamable HTTP: the latest
		{"2024-11-05", "2024-11-05", legacyVersions, "2024-11-05"},                       // a legacy client
		{"2025-11-25", "2024-11-05", legacyVersions, "2024-11-05"},                       // the legacy transport carries 2024-11-05
		{"2025-11-25", "2025-11-25", legacyVersions, "2025-11-25"},                       // and later versions
		{"", "2025-06-18", supportedVersions, "2025-06-18"},                              // no version asked
		{"1999-01-01", "2099-01-01", []string{"2025-03-26", "2025-06-18"}, "2025-06-18"}, // nothing known: the latest served
	} {
		assert.Equal(t, c.want, clientHopVersion(c.requested, c.upstream, c.served), "%+v", c)
	}
	assert.True(t, versionIn("2024-11-05", upstreamVersions))
	assert.False(t, versionIn("2024-10-07", upstreamVersions))
}

func TestNegotiateClientHopRewritesOnlyTheVersion(t *testing.T) {
	init := []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}`)
	answer := []byte(`{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2024-11-05","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}}`)
	v, out := negotiateClientHop(init, answer, "2024-11-05", supportedVersions)
	assert.Equal(t, "2025-06-18", v)
	assert.Equal(t, `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}}`, string(out))
	v, out = negotiateClientHop(init, answer, "2024-11-05", legacyVersions)
	assert.Equal(t, "2024-11-05", v)
	assert.Equal(t, string(answer), string(out), "the hops agree: the answer passes unchanged")
}
