package gateway

import (
	"bytes"
	"net/netip"
	"runtime/debug"

	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// admit runs the checks every request on the listener passes before it is
// routed, and answers the ones it refuses (returning false):
//   - the protocol is HTTP/1.0 or HTTP/1.1 (505);
//   - CONNECT and OPTIONS * target no resource here (405);
//   - at most Config.MaxHeaders header fields (431);
//   - the header block frames the body one way only: no Transfer-Encoding
//     other than chunked, never with Content-Length (400, connection
//     closed: RFC 9112 section 6.1; fasthttp would drop one of them and
//     keep going);
//   - the single-value headers (Host, Content-Length, Content-Type, Origin,
//     Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Authorization)
//     appear at most once (400; 403 for Origin): fasthttp keeps one of
//     them, first or last depending on the header, silently;
//   - the Host is well formed (400) and allowed (403). A request in
//     absolute form (POST http://host/mcp) is judged by the authority of
//     its target, not its Host header (RFC 9112 section 3.2.2);
//   - an Origin, if present, is a serialized origin (scheme://host[:port],
//     or null) and allowed (403).
func (s *Server) admit(ctx *fasthttp.RequestCtx) bool {
	h := &ctx.Request.Header
	if !h.IsHTTP11() && string(h.Protocol()) != "HTTP/1.0" {
		s.fail(ctx, fasthttp.StatusHTTPVersionNotSupported, nil, jsonrpc.CodeServerError, "HTTP Version Not Supported", nil)
		ctx.SetConnectionClose()
		return false
	}
	target := h.RequestURI()
	if h.IsConnect() || string(target) == "*" {
		ctx.Response.Header.Set("Allow", "GET, POST, DELETE")
		s.fail(ctx, fasthttp.StatusMethodNotAllowed, nil, jsonrpc.CodeServerError, "Method Not Allowed", nil)
		return false
	}
	hs := scanHeaders(h.RawHeaders())
	switch {
	case hs.lines > s.cfg.MaxHeaders:
		s.fail(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, nil, jsonrpc.CodeServerError, "Request Header Fields Too Large: too many header fields", nil)
		ctx.SetConnectionClose()
		return false
	case hs.n[hdrTransferEncoding] > 0 && (hs.n[hdrContentLength] > 0 || !bytes.EqualFold(bytes.TrimSpace(hs.te), []byte("chunked"))):
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: Transfer-Encoding must be chunked, and never with Content-Length", nil)
		ctx.SetConnectionClose()
		return false
	case hs.n[hdrOrigin] > 1:
		s.fail(ctx, fasthttp.StatusForbidden, nil, jsonrpc.CodeServerError, "Forbidden: more than one Origin header", nil)
		return false
	}
	for k := range numSingleHeaders {
		if hs.n[k] > 1 {
			s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: more than one "+singleHeaderNames[k]+" header", nil)
			return false
		}
	}
	host := h.Host()
	if len(target) > 0 && target[0] != '/' {
		authority, ok := absoluteAuthority(target)
		if !ok {
			s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: malformed request target", nil)
			return false
		}
		host = authority
	}
	origin := s.origin.Load()
	switch {
	case len(host) == 0:
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: Host header is required", nil)
		return false
	case !validAuthority(host):
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: malformed Host", nil)
		return false
	case !origin.hostAllowed(host):
		s.fail(ctx, fasthttp.StatusForbidden, nil, jsonrpc.CodeServerError, "Forbidden: Host not allowed", nil)
		return false
	}
	if hs.n[hdrOrigin] > 0 && !origin.originAllowed(h.Peek("Origin"), host) {
		s.fail(ctx, fasthttp.StatusForbidden, nil, jsonrpc.CodeServerError, "Forbidden: Origin not allowed", nil)
		return false
	}
	return true
}

// finishRequest runs after the handler. A panic while serving the request
// becomes a 500 and an error log with the stack, as in net/http, so that one
// request cannot take every session down with the process (nothing a client
// sends should get here: FuzzHandler and the hostile-input catalog fail on
// any 500). And once shutdown has begun every answer says Connection: close:
// fasthttp adds it only from the moment its own shutdown starts, which comes
// after the gateway's.
func (s *Server) finishRequest(ctx *fasthttp.RequestCtx) {
	if r := recover(); r != nil {
		s.log.Error("panic serving a request", "panic", r, "method", string(ctx.Method()), "stack", string(debug.Stack()))
		ctx.Response.Reset()
		s.fail(ctx, fasthttp.StatusInternalServerError, nil, jsonrpc.CodeInternalError, "Internal error", nil)
		ctx.SetConnectionClose()
	}
	if s.shutting.Load() {
		ctx.SetConnectionClose()
	}
}

// The header fields scanHeaders counts: first the single-value fields
// that must not repeat, then Origin (judged on its own) and
// Transfer-Encoding.
const (
	hdrHost = iota
	hdrContentLength
	hdrContentType
	hdrSessionID
	hdrProtocolVersion
	hdrLastEventID
	hdrAuthorization
	numSingleHeaders
)

const (
	hdrOrigin = numSingleHeaders + iota
	hdrTransferEncoding
	numCountedHeaders
)

var singleHeaderNames = [numSingleHeaders]string{
	"Host", "Content-Length", "Content-Type", "Mcp-Session-Id", "MCP-Protocol-Version", "Last-Event-ID", "Authorization",
}

// headerScan is what one pass over a raw header block found.
type headerScan struct {
	lines int                    // header fields (continuation lines not counted)
	n     [numCountedHeaders]int // occurrences of the counted fields
	te    []byte                 // the Transfer-Encoding value (the last one)
}

// scanHeaders walks a raw header block as received (fasthttp's RawHeaders:
// lines of "name: value", ended by an empty line). fasthttp has parsed it
// already; this pass only counts, and never allocates.
func scanHeaders(raw []byte) headerScan {
	var hs headerScan
	for len(raw) > 0 {
		var line []byte
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			line, raw = raw, nil
		}
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // obs-fold: the value of the field before goes on
		}
		hs.lines++
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		k := headerKind(line[:colon])
		if k < 0 {
			continue
		}
		hs.n[k]++
		if k == hdrTransferEncoding {
			hs.te = line[colon+1:]
		}
	}
	return hs
}

// headerKind returns the counted field a name is, or -1.
func headerKind(name []byte) int {
	var want string
	k := -1
	switch len(name) {
	case 4:
		want, k = "host", hdrHost
	case 6:
		want, k = "origin", hdrOrigin
	case 12:
		want, k = "content-type", hdrContentType
	case 13:
		want, k = "last-event-id", hdrLastEventID
		if name[0]|0x20 == 'a' {
			want, k = "authorization", hdrAuthorization
		}
	case 14:
		want, k = "mcp-session-id", hdrSessionID
		if name[0]|0x20 == 'c' {
			want, k = "content-length", hdrContentLength
		}
	case 17:
		want, k = "transfer-encoding", hdrTransferEncoding
	case 20:
		want, k = "mcp-protocol-version", hdrProtocolVersion
	default:
		return -1
	}
	if !bytes.EqualFold(name, []byte(want)) {
		return -1
	}
	return k
}

// absoluteAuthority returns the authority of an absolute-form request
// target (http or https, no userinfo).
func absoluteAuthority(target []byte) ([]byte, bool) {
	i := bytes.Index(target, []byte("://"))
	if i < 0 {
		return nil, false
	}
	if scheme := target[:i]; !bytes.EqualFold(scheme, []byte("http")) && !bytes.EqualFold(scheme, []byte("https")) {
		return nil, false
	}
	rest := target[i+3:]
	end := bytes.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	return rest[:end], end > 0
}

// validAuthority reports whether a is host[:port] as RFC 3986 defines it,
// restricted to what names hosts in practice: a registered name of
// letters, digits, '-', '.' and '_', an IPv4 address, or an IPv6 address
// in brackets (no zone); a port of 1 to 5 digits up to 65535. Userinfo
// ("a@b"), an empty port and anything else are refused.
func validAuthority(a []byte) bool {
	host, port := a, []byte(nil)
	if len(a) > 0 && a[0] == '[' {
		end := bytes.IndexByte(a, ']')
		if end < 0 {
			return false
		}
		ip, err := netip.ParseAddr(string(a[1:end]))
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return false
		}
		host = nil
		switch rest := a[end+1:]; {
		case len(rest) == 0:
		case rest[0] == ':':
			port = rest[1:]
			if len(port) == 0 {
				return false
			}
		default:
			return false
		}
	} else if i := bytes.IndexByte(a, ':'); i >= 0 {
		host, port = a[:i], a[i+1:]
		if len(port) == 0 {
			return false
		}
	}
	if host != nil {
		if len(host) == 0 || len(host) > 253 {
			return false
		}
		for _, c := range host {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
				return false
			}
		}
	}
	if port != nil {
		if len(port) > 5 {
			return false
		}
		v := 0
		for _, c := range port {
			if c < '0' || c > '9' {
				return false
			}
			v = v*10 + int(c-'0')
		}
		if v > 65535 {
			return false
		}
	}
	return true
}
