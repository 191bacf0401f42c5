package jsonrpc

import (
	"encoding/json"
	"testing"
)

// FuzzParse checks that Parse never panics, accepts only valid JSON, reports a parse error
// exactly for invalid JSON, and that what it extracts agrees with Lookup and Unquote.
func FuzzParse(f *testing.F) {
	f.Add([]byte(benchToolsCall))
	f.Add([]byte(benchResponse))
	f.Add([]byte(benchProgress))
	f.Add([]byte(`[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"}]`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}`))
	for _, c := range envelopeCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Parser
		msgs, _, err := p.Parse(data)
		sameEnvelope(t, data, msgs, err)
		valid := json.Valid(data)
		if err == nil && !valid {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if !valid && err.Code != CodeParseError {
			t.Fatalf("invalid JSON %q got code %d", data, err.Code)
		}
		if valid && err != nil && err.Code != CodeInvalidRequest {
			t.Fatalf("valid JSON %q got code %d: %s", data, err.Code, err.Message)
		}
		// ParseLimited refuses what Parse does and, as a parse error, exactly the nesting past its limit.
		var lp Parser
		lmsgs, _, lerr := lp.ParseLimited(data, 3)
		switch {
		case err != nil && lerr == nil:
			t.Fatalf("ParseLimited accepted %q, which Parse refused", data)
		case err == nil && lerr != nil && (lerr.Code != CodeParseError || depthOf(data) <= 3):
			t.Fatalf("ParseLimited refused %q (depth %d): %s", data, depthOf(data), lerr.Message)
		case err == nil && lerr == nil && depthOf(data) > 3:
			t.Fatalf("ParseLimited accepted %q, nested %d deep", data, depthOf(data))
		case err == nil && lerr == nil && len(lmsgs) != len(msgs):
			t.Fatalf("ParseLimited read %d messages from %q, Parse %d", len(lmsgs), data, len(msgs))
		}
		if err != nil {
			return
		}
		for _, m := range msgs {
			if m.Kind == KindInvalid {
				t.Fatalf("accepted message of kind invalid: %s", m.Raw)
			}
			if !json.Valid(m.Raw) {
				t.Fatalf("Raw is not valid JSON: %q", m.Raw)
			}
			if m.Method != nil {
				raw, ok := Lookup(m.Raw, "method")
				s, uok := Unquote(raw)
				if !ok || !uok || s != string(m.Method) {
					t.Fatalf("method %q disagrees with Lookup %q", m.Method, raw)
				}
			}
			if m.ID != nil {
				raw, ok := Lookup(m.Raw, "id")
				if !ok || string(raw) != string(m.ID) {
					t.Fatalf("id %q disagrees with Lookup %q", m.ID, raw)
				}
			}
			if m.ProgressToken != nil && !json.Valid(m.ProgressToken) {
				t.Fatalf("progress token is not valid JSON: %q", m.ProgressToken)
			}
		}
	})
}

// envelopeCases are messages whose params ParseEnvelope must look into after
// all, or must not: tokens after other members, an id or a method that comes
// after params, duplicate keys, escapes, batches, params that are not
// objects, invalid JSON inside params.
var envelopeCases = []string{
	`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":{"x":[1,{"y":"z"}]},"_meta":{"seq":1}}}`,
	`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":3,"progressToken":"t1"}}`,
	`{"params":{"progressToken":7,"progress":1},"jsonrpc":"2.0","method":"notifications/progress"}`,
	`{"jsonrpc":"2.0","method":"a","params":{"progressToken":7},"method":"notifications/progress"}`,
	`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":7},"method":"a"}`,
	`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x","_meta":{"progressToken":"p"}},"id":5}`,
	`{"jsonrpc":"2.0","params":{"_meta":{"progressToken":{"a":1}}},"method":"tools/call","id":"s"}`,
	`{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"progressToken":1}},"params":{"_meta":{}}}`,
	`{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":{"progressToken":1}},"params":[1]}`,
	`{"jsonrpc":"2.0","id":1,"method":"x","params":[{"_meta":{"progressToken":1}}]}`,
	`{"jsonrpc":"2.0","method":"notifications/progress","params":{"\u0070rogressToken":"esc"}}`,
	`{"jsonrpc":"2.0","method":"notifications/\u0070rogress","params":{"progressToken":"esc"}}`,
	`{"jsonrpc":"2.0","id":2,"method":"m","params":{"_meta":"not an object"}}`,
	`{"jsonrpc":"2.0","method":"n","params":{"a":[1,2,}}`,
	`{"jsonrpc":"2.0","id":3,"method":"m","params":{"_meta":{"progressToken":1,}}}`,
	`{"jsonrpc":"2.0","method":"n","params":{}}`,
	`{"jsonrpc":"2.0","method":"n","params":"x"}`,
	`{"jsonrpc":"2.0","id":4,"result":{"params":{"progressToken":1}}}`,
	`[{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1}},{"jsonrpc":"2.0","id":9,"method":"m","params":{"_meta":{"progressToken":2}}}]`,
}

// sameEnvelope checks that ParseEnvelope agrees with Parse (msgs, err) on data:
// the same messages, or an error with the same code.
func sameEnvelope(t *testing.T, data []byte, msgs []Message, err *Error) {
	t.Helper()
	var q Parser
	got, _, gerr := q.ParseEnvelope(data)
	if (err == nil) != (gerr == nil) || (err != nil && err.Code != gerr.Code) {
		t.Fatalf("%q: Parse error %v, ParseEnvelope error %v", data, err, gerr)
	}
	if len(got) != len(msgs) {
		t.Fatalf("%q: Parse %d messages, ParseEnvelope %d", data, len(msgs), len(got))
	}
	for i := range msgs {
		a, b := msgs[i], got[i]
		if a.Kind != b.Kind || string(a.ID) != string(b.ID) || string(a.Method) != string(b.Method) ||
			string(a.ProgressToken) != string(b.ProgressToken) || string(a.Raw) != string(b.Raw) ||
			(a.ProgressToken == nil) != (b.ProgressToken == nil) {
			t.Fatalf("%q: message %d: Parse %+v, ParseEnvelope %+v", data, i, a, b)
		}
	}
}

// TestParseEnvelope: ParseEnvelope gives Parse's messages, tokens included
// (looked for after the fact when an id or the method comes after params),
// and Parse's error codes.
func TestParseEnvelope(t *testing.T) {
	for _, c := range append(envelopeCases, benchToolsCall, benchResponse, benchProgress) {
		var p Parser
		msgs, _, err := p.Parse([]byte(c))
		sameEnvelope(t, []byte(c), msgs, err)
	}
	var p Parser
	msgs, _, err := p.ParseEnvelope([]byte(envelopeCases[6]))
	if err != nil || len(msgs) != 1 || string(msgs[0].ProgressToken) != `{"a":1}` {
		t.Fatalf("a request's token behind its params: %+v %v", msgs, err)
	}
}

// depthOf returns the deepest nesting of arrays and objects in valid JSON.
func depthOf(data []byte) int {
	depth, deepest, inString, escaped := 0, 0, false, false
	for _, c := range data {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}
