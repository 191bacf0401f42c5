package mockup

import (
	"encoding/json"
	"strconv"
)

// JSON-RPC and MCP error codes used by the server.
const (
	CodeParseError         = -32700
	CodeInvalidRequest     = -32600
	CodeMethodNotFound     = -32601
	CodeInvalidParams      = -32602
	CodeTransport          = -32000
	CodeSessionNotFound    = -32001
	CodeHeaderMismatch     = -32020
	CodeUnsupportedVersion = -32022
)

// Keys of the measurement fields every notification carries in params._meta.
const (
	MetaSeq  = "seq"
	MetaSent = "sent"
)

// ServerName is the serverInfo.name the mock reports.
const ServerName = "mcpgate-loadtest-upstream"

var nullID = []byte("null")

// appendError appends a JSON-RPC error response. id is raw JSON (nil means null); data
// is raw JSON or nil.
func appendError(dst, id []byte, code int, msg string, data []byte) []byte {
	if id == nil {
		id = nullID
	}
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"error":{"code":`...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, `,"message":`...)
	dst = appendJSONString(dst, msg)
	if data != nil {
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
	}
	return append(dst, "}}"...)
}

// appendResponse appends a JSON-RPC success response whose result is raw JSON.
func appendResponse(dst, id, result []byte) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","id":`...)
	dst = append(dst, id...)
	dst = append(dst, `,"result":`...)
	dst = append(dst, result...)
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string.
func appendJSONString(dst []byte, s string) []byte {
	simple := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f {
			simple = false
			break
		}
	}
	if simple {
		dst = append(dst, '"')
		dst = append(dst, s...)
		return append(dst, '"')
	}
	b, _ := json.Marshal(s) // a string always marshals
	return append(dst, b...)
}

// endResult closes a result object, adding resultType for stateless answers.
func endResult(dst []byte, stateless bool) []byte {
	if stateless {
		dst = append(dst, `,"resultType":"complete"`...)
	}
	return append(dst, '}')
}

// appendMeta appends `"_meta":{"seq":N,"sent":T}`.
func appendMeta(dst []byte, seq uint64, sentAt int64) []byte {
	dst = append(dst, `"_meta":{"`+MetaSeq+`":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"`+MetaSent+`":`...)
	dst = strconv.AppendInt(dst, sentAt, 10)
	return append(dst, '}')
}

func appendPad(dst []byte, n int) []byte {
	for range n {
		dst = append(dst, 'x')
	}
	return dst
}

// appendPush appends one notifications/message event payload.
func appendPush(dst []byte, seq uint64, sentAt int64, pad int) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","logger":"loadtest","data":{"pad":"`...)
	dst = appendPad(dst, pad)
	dst = append(dst, `"},`...)
	dst = appendMeta(dst, seq, sentAt)
	return append(dst, "}}"...)
}

// listChangedKind reports whether kind names a list with a list_changed notification.
func listChangedKind(kind string) bool {
	switch kind {
	case "tools", "prompts", "resources":
		return true
	}
	return false
}

// appendListChanged appends one notifications/<kind>/list_changed event payload.
func appendListChanged(dst []byte, kind string, seq uint64, sentAt int64) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","method":"notifications/`...)
	dst = append(dst, kind...)
	dst = append(dst, `/list_changed","params":{`...)
	dst = appendMeta(dst, seq, sentAt)
	return append(dst, "}}"...)
}

// appendProgress appends one notifications/progress event payload. token is raw JSON.
func appendProgress(dst, token []byte, seq, total uint64, sentAt int64, pad int) []byte {
	dst = append(dst, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":`...)
	dst = append(dst, token...)
	dst = append(dst, `,"progress":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"total":`...)
	dst = strconv.AppendUint(dst, total, 10)
	if pad > 0 {
		dst = append(dst, `,"message":"`...)
		dst = appendPad(dst, pad)
		dst = append(dst, '"')
	}
	dst = append(dst, ',')
	dst = appendMeta(dst, seq, sentAt)
	return append(dst, "}}"...)
}

// appendTextResult opens a tool result with one text content item; close it with
// endResult.
func appendTextResult(dst []byte, text string) []byte {
	dst = append(dst, `{"content":[{"type":"text","text":`...)
	dst = appendJSONString(dst, text)
	return append(dst, "}]"...)
}

// appendEchoResult opens an echo tool result of size padding bytes (or text).
func appendEchoResult(dst []byte, text string, size int) []byte {
	dst = append(dst, `{"content":[{"type":"text","text":`...)
	if text != "" {
		dst = appendJSONString(dst, text)
	} else {
		dst = append(dst, '"')
		dst = appendPad(dst, size)
		dst = append(dst, '"')
	}
	return append(dst, "}]"...)
}

// appendStreamResult opens the stream tool's result.
func appendStreamResult(dst []byte, count, emitted uint64, sentAt int64) []byte {
	dst = append(dst, `{"content":[{"type":"text","text":"streamed `...)
	dst = strconv.AppendUint(dst, count, 10)
	dst = append(dst, `"}],"structuredContent":{"count":`...)
	dst = strconv.AppendUint(dst, count, 10)
	dst = append(dst, `,"emitted":`...)
	dst = strconv.AppendUint(dst, emitted, 10)
	dst = append(dst, `},"_meta":{"`+MetaSent+`":`...)
	dst = strconv.AppendInt(dst, sentAt, 10)
	return append(dst, '}')
}

// appendPushResult opens the push tool's result.
func appendPushResult(dst []byte, lastSeq uint64, rate float64) []byte {
	dst = append(dst, `{"content":[{"type":"text","text":"last_seq `...)
	dst = strconv.AppendUint(dst, lastSeq, 10)
	dst = append(dst, `"}],"structuredContent":{"last_seq":`...)
	dst = strconv.AppendUint(dst, lastSeq, 10)
	dst = append(dst, `,"rate":`...)
	dst = strconv.AppendFloat(dst, rate, 'g', -1, 64)
	return append(dst, '}')
}

// appendNotifyResult opens the notify tool's result.
func appendNotifyResult(dst []byte, kind string, seq uint64) []byte {
	dst = append(dst, `{"content":[{"type":"text","text":"sent notifications/`...)
	dst = append(dst, kind...)
	dst = append(dst, `/list_changed"}],"structuredContent":{"kind":"`...)
	dst = append(dst, kind...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	return append(dst, '}')
}

func appendInitializeResult(dst []byte, version string) []byte {
	dst = append(dst, `{"protocolVersion":"`...)
	dst = append(dst, version...)
	dst = append(dst, `","capabilities":{"tools":{},"logging":{}},"serverInfo":{"name":"`+ServerName+`","version":"1.0.0"}`...)
	return dst
}

func appendDiscoverResult(dst []byte, era Era) []byte {
	versions := `["` + Version20260728 + `"]`
	if era == EraBoth { // sessions are served too
		versions = `["` + Version20260728 + `","` + Version20251125 + `","` + Version20250618 + `","` + Version20250326 + `"]`
	}
	return append(dst, `{"supportedVersions":`+versions+`,"capabilities":{"tools":{}},"serverInfo":{"name":"`+ServerName+`","version":"1.0.0"}`...)
}

// toolsList is the tools/list result body (without the closing brace).
const toolsList = `{"tools":[` +
	`{"name":"echo","description":"Returns a text result of size bytes, or text.","inputSchema":{"type":"object","properties":{"size":{"type":"integer","minimum":0},"text":{"type":"string"}}}},` +
	`{"name":"stream","description":"Sends count progress notifications at rate per second on the answer stream, then the result.","inputSchema":{"type":"object","properties":{"count":{"type":"integer","minimum":0},"rate":{"type":"number","minimum":0},"pad":{"type":"integer","minimum":0}}}},` +
	`{"name":"push","description":"Sets the rate of notifications/message events pushed on the session's GET stream; returns the last push sequence number.","inputSchema":{"type":"object","properties":{"rate":{"type":"number","minimum":0},"pad":{"type":"integer","minimum":0},"burst":{"type":"integer","minimum":1,"maximum":1024}}}},` +
	`{"name":"notify","description":"Sends notifications/<kind>/list_changed on the session's GET stream.","inputSchema":{"type":"object","properties":{"kind":{"type":"string","enum":["tools","prompts","resources"]}}}}` +
	`]`
