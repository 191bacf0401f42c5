package sse

import (
	"bytes"
	"errors"
	"strconv"
)

// ErrBadEventID is returned by ParseEventID when its input is not a well-formed
// "<stream>_<seq>" event ID.
var ErrBadEventID = errors.New("sse: malformed event id")

// AppendEventID appends the event ID "<stream>_<seq>" (both decimal) to dst.
func AppendEventID(dst []byte, stream, seq uint64) []byte {
	dst = strconv.AppendUint(dst, stream, 10)
	dst = append(dst, '_')
	return strconv.AppendUint(dst, seq, 10)
}

// ParseEventID is the strict inverse of AppendEventID. It accepts exactly
// digits '_' digits, where each number is a decimal uint64 with no sign, no leading zeros
// (except "0" itself), no surrounding space and no overflow. Any other input returns an
// error wrapping ErrBadEventID.
func ParseEventID(s []byte) (stream, seq uint64, err error) {
	i := bytes.IndexByte(s, '_')
	if i < 0 {
		return 0, 0, errBadID("missing '_'")
	}
	stream, ok := parseUint(s[:i])
	if !ok {
		return 0, 0, errBadID("bad stream number")
	}
	seq, ok = parseUint(s[i+1:])
	if !ok {
		return 0, 0, errBadID("bad sequence number")
	}
	return stream, seq, nil
}

// badIDError carries a static reason; it is a value type so building it does not allocate
// beyond the interface conversion of a small struct.
type badIDError struct{ reason string }

func (e badIDError) Error() string {
	return "sse.ParseEventID: " + e.reason + ": " + ErrBadEventID.Error()
}
func (e badIDError) Unwrap() error { return ErrBadEventID }

func errBadID(reason string) error { return badIDError{reason} }

// parseUint parses a canonical decimal uint64: non-empty, digits only, no leading zero
// unless the number is exactly "0", no overflow.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (^uint64(0)-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// AppendStreamEvent appends one complete event block carrying a gateway event ID and a
// payload:
//
//	id: <stream>_<seq>
//	data: <line 1>
//	data: <line 2>
//	<blank line>
//
// data is split into lines at "\r\n", "\n" and "\r" (a JSON payload normally contains
// none, so it usually becomes one data line). Empty data produces one empty data line, so
// the block still carries data; AppendStreamEvent(dst, stream, seq, nil) is the priming
// event (an id and empty data) that 2025-11-25 clients expect. This is the gateway's hot path: it allocates nothing when
// dst has room.
func AppendStreamEvent(dst []byte, stream, seq uint64, data []byte) []byte {
	dst = append(dst, "id: "...)
	dst = AppendEventID(dst, stream, seq)
	dst = append(dst, '\n')
	dst = appendLines(dst, "data: ", data)
	return append(dst, '\n')
}

// AppendDataEvent appends an event without id: one "data: " line per line
// of data, then the blank line (an answer of the stateless revision, which
// has no resumption). It allocates nothing when dst has room.
func AppendDataEvent(dst, data []byte) []byte {
	dst = appendLines(dst, "data: ", data)
	return append(dst, '\n')
}

// appendLines writes prefix+line+"\n" for every line of data (split at CRLF, LF, CR).
func appendLines(dst []byte, prefix string, data []byte) []byte {
	for {
		i := indexEOL(data)
		if i < 0 {
			dst = append(dst, prefix...)
			dst = append(dst, data...)
			return append(dst, '\n')
		}
		dst = append(dst, prefix...)
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
}

// indexEOL returns the index of the first '\r' or '\n' in b, or -1.
func indexEOL(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if j := bytes.IndexByte(b[:i], '\r'); j >= 0 {
		return j
	}
	return i
}

// Event is one decoded (or to-be-encoded) SSE event block.
type Event struct {
	ID      []byte // value of the last id field in the block
	HasID   bool   // an id field was present in this block
	Event   []byte // event type ("" = message)
	Data    []byte // data lines joined with "\n"
	HasData bool   // at least one data field present
	Retry   int64  // retry field in ms, -1 if absent
}

// AppendEvent appends ev as one event block: an id line when HasID or ID is non-empty, an
// event line when Event is non-empty, a retry line when Retry >= 0, data lines (split at
// CRLF, LF and CR) when HasData or Data is non-empty, then the blank line that ends the
// block. Note that the zero Event has Retry 0, which is written; set Retry to -1 to omit
// it. An ID or event type containing CR or LF cannot be represented in SSE, so it is cut
// at the first CR or LF; an ID containing NUL is written as is, and decoders ignore it. If ev has no field to write, nothing is appended.
func AppendEvent(dst []byte, ev *Event) []byte {
	start := len(dst)
	if ev.HasID || len(ev.ID) > 0 {
		dst = append(dst, "id: "...)
		dst = append(dst, cutEOL(ev.ID)...)
		dst = append(dst, '\n')
	}
	if len(ev.Event) > 0 {
		dst = append(dst, "event: "...)
		dst = append(dst, cutEOL(ev.Event)...)
		dst = append(dst, '\n')
	}
	if ev.Retry >= 0 {
		dst = append(dst, "retry: "...)
		dst = strconv.AppendInt(dst, ev.Retry, 10)
		dst = append(dst, '\n')
	}
	if ev.HasData || len(ev.Data) > 0 {
		dst = appendLines(dst, "data: ", ev.Data)
	}
	if len(dst) == start {
		return dst
	}
	return append(dst, '\n')
}

func cutEOL(b []byte) []byte {
	if i := indexEOL(b); i >= 0 {
		return b[:i]
	}
	return b
}

// AppendComment appends text as a comment-only block: ": <line>\n" for every line of text
// (split at CRLF, LF and CR), then a blank line. Decoders ignore it; the gateway uses it for
// heartbeats.
func AppendComment(dst []byte, text string) []byte {
	for {
		i := indexEOLString(text)
		if i < 0 {
			dst = append(dst, ": "...)
			dst = append(dst, text...)
			return append(dst, '\n', '\n')
		}
		dst = append(dst, ": "...)
		dst = append(dst, text[:i]...)
		dst = append(dst, '\n')
		if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
			i++
		}
		text = text[i+1:]
	}
}

func indexEOLString(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '\r' || s[i] == '\n' {
			return i
		}
	}
	return -1
}

// AppendRetry appends "retry: <ms>\n\n", a standalone block that sets the client's
// reconnection delay. A negative ms is written as 0.
func AppendRetry(dst []byte, ms int64) []byte {
	if ms < 0 {
		ms = 0
	}
	dst = append(dst, "retry: "...)
	dst = strconv.AppendInt(dst, ms, 10)
	return append(dst, '\n', '\n')
}
