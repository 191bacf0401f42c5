package gateway

import (
	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// Protocol versions are per hop (PROTOCOL.md section 3, rule 1): the
// client's hop and the upstream's hop each have the version their own
// initialize settled, and the gateway serves each hop at its version
// (event ids, priming, polling, batches and the version header toward the
// client; MCP-Protocol-Version toward the upstream). Messages pass between
// the hops unchanged: what a server sends depends on the capabilities the
// client declared, which reach it unchanged, and a client uses what the
// server's InitializeResult declares, which reaches it unchanged but for
// its protocolVersion.
//
//   - The Streamable HTTP endpoint serves supportedVersions (2025-03-26 and
//     later: the transport begins there).
//   - The legacy HTTP+SSE endpoints serve legacyVersions: 2024-11-05 and
//     every later session-era version (the old transport carries any of
//     them, and clients such as the TypeScript SDK's SSEClientTransport
//     offer their latest over it).
//   - Upstreams may settle any of upstreamVersions, whatever their kind.
//
// The client's initialize goes upstream as the client sent it, so the
// upstream answers the version the client asked for or its own pick, as it
// would directly. The client's hop then gets that version if its endpoint
// serves it (the usual case: the hops agree, and the gateway is
// transparent); otherwise the version the client asked for, if served, or
// else the endpoint's latest, and the InitializeResult's protocolVersion is
// rewritten to it. So a Streamable HTTP client in front of a 2024-11-05-only
// server still speaks 2025-x to the gateway, and a legacy client is never
// handed a version its transport cannot carry.
var (
	legacyVersions   = []string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"}
	upstreamVersions = legacyVersions
)

// versionIn reports whether v is one of versions.
func versionIn(v string, versions []string) bool {
	for _, s := range versions {
		if v == s {
			return true
		}
	}
	return false
}

// clientHopVersion picks the client hop's version (see above): upstream's
// if served is a list it is in, else requested if served, else the latest
// served.
func clientHopVersion(requested, upstreamV string, served []string) string {
	switch {
	case versionIn(upstreamV, served):
		return upstreamV
	case versionIn(requested, served):
		return requested
	}
	return served[len(served)-1]
}

// requestedVersion reads params.protocolVersion of an initialize request,
// "" if absent or not a string.
func requestedVersion(initialize []byte) string {
	raw, ok := jsonrpc.Lookup(initialize, "params", "protocolVersion")
	if !ok {
		return ""
	}
	v, _ := upstream.VersionOf(raw)
	return v
}

// negotiateClientHop returns the client hop's version for an initialize
// the upstream answered with upstreamV, and the answer to give the client:
// answer itself when the hops agree, else a copy whose
// result.protocolVersion names the client hop's version.
func negotiateClientHop(initialize, answer []byte, upstreamV string, served []string) (string, []byte) {
	v := clientHopVersion(requestedVersion(initialize), upstreamV, served)
	if v == upstreamV {
		return v, answer
	}
	raw, ok := jsonrpc.Lookup(answer, "result", "protocolVersion")
	if !ok {
		return v, answer // Connect checked it is there
	}
	return v, jsonrpc.AppendReplaced(make([]byte, 0, len(answer)+8), answer, raw, jsonrpc.AppendString(nil, v))
}
