package jsonrpc

import (
	"fmt"
)

// Parser parses JSON-RPC message envelopes. It is reusable and NOT safe for concurrent
// use (callers pool it). The zero value is ready to use.
type Parser struct {
	msgs    []Message
	arena   []byte // unescaped method names of the current Parse
	scratch []byte // unescaped keys
	lazy    bool   // ParseEnvelope: params looked into only when needed
	// base is the depth the top-level value starts at: 0, or more for
	// ParseLimited, whose limit is then maxDepth-base at no cost per value.
	base int
}

// fieldState collects one message's envelope while its object is scanned.
type fieldState struct {
	version   int // 0 absent, 1 "2.0", 2 anything else
	method    []byte
	hasMethod bool
	methodStr bool
	id        []byte
	idState   int // 0 absent, 1 string or number, 2 null, 3 other type
	hasParams bool
	paramsOK  bool
	metaTok   []byte
	paramsTok []byte
	// paramsAt is where a params object skipped by ParseEnvelope starts
	// (0: none skipped), paramsDepth the depth of the message around it.
	paramsAt    int
	paramsDepth int
	hasResult   bool
	hasError    bool
	errorOK     bool
}

const (
	idAbsent = iota
	idValid
	idNull
	idBad
)

// Parse reads what routing needs from one HTTP body: a single message or a batch (a JSON
// array of messages). It returns the messages and whether the body was a batch.
//
// Invalid JSON (including trailing non-whitespace after the value, and nesting deeper than
// 10000) returns an *Error with CodeParseError. Valid JSON that is not a JSON-RPC 2.0
// message, an empty batch, or a batch with any invalid element returns an *Error with
// CodeInvalidRequest, whose ID is the offending message's id when it could be read (for a
// batch, the first invalid element). Syntax errors anywhere take precedence over invalid
// messages.
//
// A message must have "jsonrpc": "2.0". A request has a string method and an id that is a
// string or a number; without id it is a notification. params, if present, must be an
// object or an array; it is not decoded beyond params._meta.progressToken and
// params.progressToken. A response has an id (string or number) and exactly one of result
// and error; an error response may have "id": null, and its error must be an object with
// an integer code (no fraction or exponent) and a string message. A message may not mix a
// method with result or error. Unknown members are ignored. With duplicate keys the last
// one wins, as in encoding/json.
//
// The returned slice and the messages' slices are valid until the next Parse on p and
// alias data.
func (p *Parser) Parse(data []byte) (msgs []Message, batch bool, err *Error) {
	p.lazy, p.base = false, 0
	return p.parse(data)
}

// ParseLimited is Parse with nesting deeper than limit (1 to 10000; the
// top-level value is at depth 1) refused as invalid JSON, CodeParseError. The
// gateway parses clients' bodies with the limit of the official Go SDK,
// which decodes nothing deeper and ends a stdio connection on a message it
// cannot decode.
func (p *Parser) ParseLimited(data []byte, limit int) (msgs []Message, batch bool, err *Error) {
	limit = min(max(limit, 1), maxDepth)
	p.lazy, p.base = false, maxDepth-limit
	if msgs, batch, err = p.parse(data); err == nil || err.Code != CodeParseError || p.base == 0 {
		return msgs, batch, err
	}
	if _, _, e := p.Parse(data); e == nil || e.Code != CodeParseError {
		// Valid JSON, only too deep: say so (a refusal is rare, the second look cheap).
		err = &Error{Code: CodeParseError, Message: fmt.Sprintf("Parse error: nesting deeper than %d", limit)}
	}
	return nil, batch, err
}

// ParseEnvelope is Parse for a caller that needs a message's kind, id, method and
// progress token but not where a syntax error is: a params object is skipped (still
// checked to be valid JSON) and looked into for progress tokens only when the message
// turns out to be a request or a notifications/progress, which saves about a quarter of
// parsing a notification. Its messages are Parse's; an *Error's code is too, its offset
// may differ.
func (p *Parser) ParseEnvelope(data []byte) (msgs []Message, batch bool, err *Error) {
	p.lazy, p.base = true, 0
	return p.parse(data)
}

func (p *Parser) parse(data []byte) (msgs []Message, batch bool, err *Error) {
	p.msgs = p.msgs[:0]
	p.arena = p.arena[:0]
	i := skipWS(data, 0)
	if i >= len(data) {
		return nil, false, parseError(i, "empty input")
	}
	var invalid *Error
	if data[i] == '[' {
		batch = true
		i = skipWS(data, i+1)
		if i < len(data) && data[i] == ']' {
			i++
			invalid = &Error{Code: CodeInvalidRequest, Message: "Invalid Request: empty batch"}
		} else {
			for {
				var bad *Error
				var ok bool
				i, bad, ok = p.parseOne(data, i, p.base+1)
				if !ok {
					return nil, true, parseError(i, "invalid JSON")
				}
				if bad != nil && invalid == nil {
					invalid = bad
				}
				i = skipWS(data, i)
				if i >= len(data) {
					return nil, true, parseError(i, "unterminated batch")
				}
				if data[i] == ']' {
					i++
					break
				}
				if data[i] != ',' {
					return nil, true, parseError(i, "invalid JSON")
				}
				i = skipWS(data, i+1)
			}
		}
	} else {
		var ok bool
		i, invalid, ok = p.parseOne(data, i, p.base)
		if !ok {
			return nil, false, parseError(i, "invalid JSON")
		}
	}
	if i = skipWS(data, i); i < len(data) {
		return nil, batch, parseError(i, "trailing data after JSON value")
	}
	if invalid != nil {
		return nil, batch, invalid
	}
	return p.msgs, batch, nil
}

func parseError(at int, what string) *Error {
	return &Error{Code: CodeParseError, Message: fmt.Sprintf("Parse error: %s at offset %d", what, at)}
}

func invalidRequest(id []byte, why string) *Error {
	e := &Error{Code: CodeInvalidRequest, Message: "Invalid Request: " + why}
	if id != nil {
		e.ID = append([]byte(nil), id...)
	}
	return e
}

// parseOne scans the value at data[i] as one message; depth is the number of enclosing
// containers (1 inside a batch). ok=false means a syntax error at end. A valid message is
// appended to p.msgs; otherwise bad says why it is not one.
func (p *Parser) parseOne(data []byte, i, depth int) (end int, bad *Error, ok bool) {
	if i >= len(data) {
		return i, nil, false
	}
	if data[i] != '{' {
		if end, ok = skipValue(data, i, depth); !ok {
			return end, nil, false
		}
		if data[i] == '[' {
			return end, invalidRequest(nil, "nested batch"), true
		}
		return end, invalidRequest(nil, "message is not an object"), true
	}
	start := i
	var f fieldState
	var it objectIter
	it.start(data, i, depth+1)
	for it.next() {
		if it.keyEsc {
			p.scratch = appendUnescaped(p.scratch[:0], it.key)
			p.member(&it, &f, p.scratch)
		} else {
			p.member(&it, &f, it.key)
		}
	}
	if !it.ok {
		return it.i, nil, false
	}
	end = it.i
	if f.paramsAt > 0 && f.hasMethod && f.needsParams() {
		// A skipped params object that holds a token this message needs.
		outer := objectIter{data: data, i: f.paramsAt, depth: f.paramsDepth, ok: true}
		p.params(&outer, &f)
	}
	m := Message{Raw: data[start:end]}
	if why := f.classify(&m); why != "" {
		var id []byte
		if f.idState == idValid {
			id = f.id
		}
		return end, invalidRequest(id, why), true
	}
	p.msgs = append(p.msgs, m)
	return end, nil, true
}

// member consumes the value of the current member of a message object.
func (p *Parser) member(it *objectIter, f *fieldState, key []byte) {
	data := it.data
	if it.i >= len(data) {
		it.fail(it.i)
		return
	}
	c := data[it.i]
	switch string(key) {
	case "jsonrpc":
		f.version = 2
		if c == '"' {
			end, esc, ok := scanString(data, it.i)
			if !ok {
				it.fail(end)
				return
			}
			body := data[it.i+1 : end-1]
			if esc {
				p.scratch = appendUnescaped(p.scratch[:0], body)
				body = p.scratch
			}
			if string(body) == "2.0" {
				f.version = 1
			}
			it.i = end
			return
		}
	case "method":
		f.hasMethod, f.methodStr, f.method = true, false, nil
		if c == '"' {
			end, esc, ok := scanString(data, it.i)
			if !ok {
				it.fail(end)
				return
			}
			body := data[it.i+1 : end-1]
			if esc {
				n := len(p.arena)
				p.arena = appendUnescaped(p.arena, body)
				body = p.arena[n:len(p.arena):len(p.arena)]
			}
			f.method, f.methodStr = body, true
			it.i = end
			return
		}
	case "id":
		start := it.i
		it.skip()
		if !it.ok {
			return
		}
		f.id = data[start:it.i]
		switch {
		case c == '"' || c == '-' || (c >= '0' && c <= '9'):
			f.idState = idValid
		case c == 'n':
			f.idState = idNull
		default:
			f.idState, f.id = idBad, nil
		}
		return
	case "params":
		f.hasParams = true
		f.paramsOK = c == '{' || c == '['
		f.metaTok, f.paramsTok, f.paramsAt = nil, nil, 0
		if c == '{' {
			if p.lazy && !f.needsParams() {
				f.paramsAt, f.paramsDepth = it.i, it.depth
				break // skipped below; parseOne looks into it if needed
			}
			p.params(it, f)
			return
		}
	case "result":
		f.hasResult = true
	case "error":
		f.hasError = true
		f.errorOK = false
		if c == '{' {
			p.errorObject(it, f)
			return
		}
	}
	it.skip()
}

// params scans the params object at it.i for progress tokens.
func (p *Parser) params(it *objectIter, f *fieldState) {
	var pit objectIter
	pit.start(it.data, it.i, it.depth+1)
	for pit.next() {
		switch {
		case pit.keyIs("progressToken", &p.scratch):
			start := pit.i
			if pit.skip(); pit.ok {
				f.paramsTok = pit.data[start:pit.i]
			}
		case pit.keyIs("_meta", &p.scratch) && pit.i < len(pit.data) && pit.data[pit.i] == '{':
			f.metaTok = nil
			var mit objectIter
			mit.start(pit.data, pit.i, pit.depth+1)
			for mit.next() {
				if mit.keyIs("progressToken", &p.scratch) {
					start := mit.i
					if mit.skip(); mit.ok {
						f.metaTok = mit.data[start:mit.i]
					}
				} else {
					mit.skip()
				}
			}
			if !mit.ok {
				pit.fail(mit.i)
			} else {
				pit.i = mit.i
			}
		case pit.keyIs("_meta", &p.scratch):
			f.metaTok = nil
			pit.skip()
		default:
			pit.skip()
		}
	}
	if !pit.ok {
		it.fail(pit.i)
		return
	}
	it.i = pit.i
}

// errorObject scans an error member's object and checks its code and message.
func (p *Parser) errorObject(it *objectIter, f *fieldState) {
	var eit objectIter
	eit.start(it.data, it.i, it.depth+1)
	codeOK, msgOK := false, false
	for eit.next() {
		c := byte(0)
		if eit.i < len(eit.data) {
			c = eit.data[eit.i]
		}
		switch {
		case eit.keyIs("code", &p.scratch):
			codeOK = false
			if c == '-' || (c >= '0' && c <= '9') {
				end, isInt, ok := scanNumber(eit.data, eit.i)
				if !ok {
					eit.fail(end)
					break
				}
				codeOK = isInt && fitsInt64(eit.data[eit.i:end])
				eit.i = end
			} else {
				eit.skip()
			}
		case eit.keyIs("message", &p.scratch):
			msgOK = c == '"'
			eit.skip()
		default:
			eit.skip()
		}
	}
	if !eit.ok {
		it.fail(eit.i)
		return
	}
	f.errorOK = codeOK && msgOK
	it.i = eit.i
}

// fitsInt64 reports whether an integer JSON number fits in an int64.
func fitsInt64(num []byte) bool {
	neg := num[0] == '-'
	if neg {
		num = num[1:]
	}
	const maxDigits = "9223372036854775807"
	if len(num) != len(maxDigits) {
		return len(num) < len(maxDigits)
	}
	if neg {
		return string(num) <= "9223372036854775808"
	}
	return string(num) <= maxDigits
}

// needsParams reports whether what was read of the message so far makes it
// one whose progress token is in params: a request (an id) or a
// notifications/progress. ParseEnvelope looks into params at once then, which
// in the usual member order (id and method before params) is the only look;
// it looks later only when an id or the method comes after params.
func (f *fieldState) needsParams() bool {
	return f.idState == idValid || string(f.method) == "notifications/progress"
}

// classify fills m from f, or returns why the message is invalid.
func (f *fieldState) classify(m *Message) string {
	switch f.version {
	case 0:
		return `missing "jsonrpc"`
	case 2:
		return `"jsonrpc" must be "2.0"`
	}
	if f.idState == idBad {
		return "id must be a string or a number"
	}
	if f.hasParams && !f.paramsOK {
		return "params must be an object or an array"
	}
	if f.hasMethod {
		if !f.methodStr {
			return "method must be a string"
		}
		if f.hasResult || f.hasError {
			return "a message cannot have both a method and a result or error"
		}
		m.Method = f.method
		switch f.idState {
		case idNull:
			return "request id must not be null"
		case idValid:
			m.Kind, m.ID, m.ProgressToken = KindRequest, f.id, f.metaTok
		default:
			m.Kind = KindNotification
			if string(f.method) == "notifications/progress" {
				m.ProgressToken = f.paramsTok
			}
		}
		return ""
	}
	switch {
	case f.hasResult && f.hasError:
		return "a response cannot have both result and error"
	case f.hasResult:
		if f.idState != idValid {
			return "response id must be a string or a number"
		}
		m.Kind, m.ID = KindResponse, f.id
	case f.hasError:
		if f.idState == idAbsent {
			return "error response must have an id"
		}
		if !f.errorOK {
			return "error must be an object with an integer code and a string message"
		}
		m.Kind, m.ID = KindError, f.id
	default:
		return "message has neither a method nor a result or error"
	}
	return ""
}
