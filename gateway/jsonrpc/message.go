package jsonrpc

import (
	"strconv"
)

// Kind is the kind of a JSON-RPC message.
type Kind uint8

// Message kinds.
const (
	KindInvalid      Kind = iota
	KindRequest           // method + id
	KindNotification      // method, no id
	KindResponse          // id + result
	KindError             // id (may be null) + error
)

// String returns the lower-case name of k.
func (k Kind) String() string {
	switch k {
	case KindInvalid:
		return "invalid"
	case KindRequest:
		return "request"
	case KindNotification:
		return "notification"
	case KindResponse:
		return "response"
	case KindError:
		return "error"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Message is what routing needs from one JSON-RPC message. Its slices alias the parsed
// input or the Parser's buffers; see Parser.Parse for how long they stay valid.
type Message struct {
	Kind Kind
	// ID is the raw JSON of the id (a number or string token exactly as sent, quotes
	// included for strings), nil if absent. For an error response with "id": null it is
	// the four bytes "null".
	ID []byte
	// Method is the unescaped method name, nil if none (responses). Invalid UTF-8 is
	// passed through unchanged.
	Method []byte
	// ProgressToken is the raw JSON of params._meta.progressToken for requests and of
	// params.progressToken for "notifications/progress" notifications; nil if absent or
	// for any other message. Its JSON type is not checked.
	ProgressToken []byte
	// Raw is this message's bytes within the input, without surrounding whitespace.
	Raw []byte
}

// Standard JSON-RPC error codes, and the gateway's transport-level codes.
const (
	CodeParseError      = -32700
	CodeInvalidRequest  = -32600
	CodeMethodNotFound  = -32601
	CodeInvalidParams   = -32602
	CodeInternalError   = -32603
	CodeServerError     = -32000 // transport-level rejections (bad Accept, missing session, ...)
	CodeSessionNotFound = -32001
)

// Error is a JSON-RPC error. Parse returns one with CodeParseError or CodeInvalidRequest.
type Error struct {
	Code    int
	Message string
	// ID is the raw JSON id of the offending message when it could be read, else nil.
	// Errors returned by Parse own their ID (it does not alias the input).
	ID []byte
}

// Sentinels for errors.Is: Parse's errors match ErrParse or ErrInvalidRequest by code
// (see Error.Is). They are never returned themselves and must not be modified.
var (
	ErrParse          = &Error{Code: CodeParseError, Message: "Parse error"}
	ErrInvalidRequest = &Error{Code: CodeInvalidRequest, Message: "Invalid Request"}
)

// Error implements error.
func (e *Error) Error() string {
	return "jsonrpc: " + e.Message + " (code " + strconv.Itoa(e.Code) + ")"
}

// Is reports whether target is an *Error with the same Code, so that
// errors.Is(err, jsonrpc.ErrParse) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && t.Code == e.Code
}

// AppendError appends a complete JSON-RPC error response:
//
//	{"jsonrpc":"2.0","id":<id or null>,"error":{"code":<code>,"message":"<message>"[,"data":<data>]}}
//
// id and data are raw JSON and are copied as they are (nil id = null, nil data = no data
// member); message is JSON-escaped.
func AppendError(dst []byte, id []byte, code int, message string, data []byte) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	if id == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, id...)
	}
	dst = append(dst, `,"error":{"code":`...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, `,"message":`...)
	dst = AppendString(dst, message)
	if data != nil {
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
	}
	return append(dst, '}', '}')
}
