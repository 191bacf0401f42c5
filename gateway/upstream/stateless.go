package upstream

import (
	"context"
	"fmt"

	"github.com/valyala/fasthttp"
)

// StatelessVersion is the protocol revision without sessions (2026-07-28):
// no initialize, per-request _meta, Mcp-Method/Mcp-Name headers, no GET
// stream and no resumption.
const StatelessVersion = "2026-07-28"

// Header is one HTTP header of a stateless request.
type Header struct{ Name, Value string }

// Stateless is implemented by transports (and adapters) that forward
// messages of the stateless revision, which need no session.
type Stateless interface {
	// Do forwards one message with the given MCP headers
	// (MCP-Protocol-Version, Mcp-Method, Mcp-Name, Mcp-Param-*; Content-Type
	// and Accept are set by Do). A request's answer comes back as JSON or as
	// a Stream; closing the Stream before its response cancels the request
	// (the revision's cancellation). An upstream refusal is a *StatusError
	// with the upstream's JSON-RPC body. Safe for concurrent use.
	Do(ctx context.Context, hdr []Header, body []byte) (*Reply, error)
}

// statelessSession stands for "no session" in the HTTP transport's shared
// request code: no Mcp-Session-Id, no version header of its own, answers
// not resumed.
var statelessSession = &httpSession{}

var _ Stateless = (*HTTP)(nil)

// Do forwards one stateless message (see Stateless).
func (t *HTTP) Do(ctx context.Context, hdr []Header, body []byte) (*Reply, error) {
	req, resp := t.newPost(ctx, statelessSession, body)
	defer fasthttp.ReleaseRequest(req)
	// No session to remember a forwarded credential: each request carries
	// its own (or the static one).
	if v, ok := t.cfg.Auth.valueFor(ctx, nil); ok {
		req.Header.Set(t.cfg.Auth.Name, v)
	}
	for _, h := range hdr {
		req.Header.Set(h.Name, h.Value)
	}
	if err := t.do(ctx, req, resp); err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, fmt.Errorf("stateless post: %w", err)
	}
	return t.reply(statelessSession, "stateless post", resp)
}
