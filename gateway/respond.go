package gateway

import (
	"bytes"
	"errors"
	"net"
	"os"

	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// CodeUnsupportedVersion is the JSON-RPC error code for an unsupported
// MCP-Protocol-Version (data carries supported and requested).
const CodeUnsupportedVersion = -32022

// fail answers with an HTTP status and a JSON-RPC error body. id is the
// request's raw JSON id, nil for null. data is raw JSON or nil. Headers
// set before it (Allow, Retry-After) are kept; a body set before it is
// replaced.
func (s *Server) fail(ctx *fasthttp.RequestCtx, status int, id []byte, code int, msg string, data []byte) {
	ctx.Response.ResetBody()
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.Response.SetBodyRaw(jsonrpc.AppendError(make([]byte, 0, 96+len(msg)+len(data)), id, code, msg, data))
	s.metrics.status(status)
}

// unsupportedVersion answers 400 with -32022 and the versions served.
func (s *Server) unsupportedVersion(ctx *fasthttp.RequestCtx, id, requested []byte) {
	s.fail(ctx, fasthttp.StatusBadRequest, id, CodeUnsupportedVersion,
		"Bad Request: unsupported protocol version "+string(requested), versionData(string(requested)))
}

// handleTransportError answers requests fasthttp could not read: 413 for a
// body over the limit, 431 for a head over the read buffer, 408 when the
// head or body did not arrive in time (Config.ReadHeaderTimeout,
// ReadBodyTimeout), 400 for anything malformed (a bare LF or CR in the
// head included). fasthttp closes the connection after it.
func (s *Server) handleTransportError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		s.fail(ctx, fasthttp.StatusRequestEntityTooLarge, nil, jsonrpc.CodeServerError, "Request body too large", nil)
	case errors.As(err, &small):
		s.fail(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, nil, jsonrpc.CodeServerError, "Request Header Fields Too Large", nil)
	case errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		s.fail(ctx, fasthttp.StatusRequestTimeout, nil, jsonrpc.CodeServerError, "Request Timeout: the request did not arrive in time", nil)
	case errors.Is(err, errBareLineEnd):
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: request head lines must end with CRLF", nil)
	default:
		s.fail(ctx, fasthttp.StatusBadRequest, nil, jsonrpc.CodeServerError, "Bad Request: malformed HTTP request", nil)
	}
}

func versionSupported(v []byte) bool {
	for _, s := range supportedVersions {
		if string(v) == s {
			return true
		}
	}
	return false
}

// versionAtLeast compares date-shaped protocol versions.
func versionAtLeast(v, min string) bool { return v >= min }

// validSessionID: 1..MaxSessionIDLen bytes of visible ASCII (0x21-0x7E).
func validSessionID(id []byte) bool {
	if len(id) == 0 || len(id) > MaxSessionIDLen {
		return false
	}
	for _, c := range id {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// mediaType returns the media type of a header value, without parameters
// or surrounding space (case as sent: compare with mediaIs).
func mediaType(v []byte) []byte {
	if i := bytes.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return bytes.TrimSpace(v)
}

// mediaIs compares a media type case-insensitively, without allocating.
func mediaIs(v []byte, want string) bool {
	return len(v) == len(want) && bytes.EqualFold(v, []byte(want))
}

// acceptsAll is accepts over every Accept field line of a request: Accept
// is a list-based field, and two lines mean the same as one joined with a
// comma (RFC 9110 section 5.3).
func acceptsAll(h *fasthttp.RequestHeader) (json, sse bool) {
	var j, e acceptMatch
	for _, v := range h.PeekAll("Accept") {
		acceptsInto(v, &j, &e)
	}
	return j.ok, e.ok
}

// acceptMatch is the most specific media range of an Accept header that
// matches one media type (level 3: the type itself, 2: type/*, 1: */*, 0:
// none) and whether it accepts it (a qvalue of 0 means "not acceptable",
// RFC 9110 section 12.4.2; the most specific range decides, section 12.5.1).
type acceptMatch struct {
	level int8
	ok    bool
}

func (m *acceptMatch) see(level int8, ok bool) {
	switch {
	case level > m.level:
		m.level, m.ok = level, ok
	case level == m.level && ok:
		m.ok = true
	}
}

// accepts reports which of JSON and SSE an Accept header covers. An absent
// header covers nothing (MCP clients must send it).
func accepts(h []byte) (json, sse bool) {
	var j, e acceptMatch
	acceptsInto(h, &j, &e)
	return j.ok, e.ok
}

func acceptsInto(h []byte, j, e *acceptMatch) {
	for len(h) > 0 {
		var part []byte
		if i := bytes.IndexByte(h, ','); i >= 0 {
			part, h = h[:i], h[i+1:]
		} else {
			part, h = h, nil
		}
		ok := !qualityZero(part)
		switch mt := mediaType(part); {
		case mediaIs(mt, "*/*"):
			j.see(1, ok)
			e.see(1, ok)
		case mediaIs(mt, "application/*"):
			j.see(2, ok)
		case mediaIs(mt, "application/json"):
			j.see(3, ok)
		case mediaIs(mt, "text/*"):
			e.see(2, ok)
		case mediaIs(mt, "text/event-stream"):
			e.see(3, ok)
		}
	}
}

// qualityZero reports whether a media range's parameters give it the
// qvalue 0 ("q=0", "q=0.0", ... : not acceptable).
func qualityZero(part []byte) bool {
	i := bytes.IndexByte(part, ';')
	if i < 0 {
		return false
	}
	for _, p := range bytes.Split(part[i+1:], []byte(";")) {
		p = bytes.TrimSpace(p)
		if len(p) < 2 || (p[0] != 'q' && p[0] != 'Q') || p[1] != '=' {
			continue
		}
		v := bytes.TrimSpace(p[2:])
		if len(v) == 0 || v[0] != '0' {
			return false
		}
		v = v[1:]
		if len(v) > 0 && v[0] == '.' {
			v = v[1:]
		}
		return len(bytes.Trim(v, "0")) == 0 && len(v) <= 3
	}
	return false
}
