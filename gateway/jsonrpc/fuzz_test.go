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
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Parser
		msgs, _, err := p.Parse(data)
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
