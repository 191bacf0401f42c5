package jsonrpc

import (
	"encoding/json"
	"errors"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// want is the expected view of one parsed message.
type want struct {
	Kind   Kind
	ID     string
	Method string
	Token  string
}

func view(m Message) want {
	return want{Kind: m.Kind, ID: string(m.ID), Method: string(m.Method), Token: string(m.ProgressToken)}
}

const toolsCall = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_weather","arguments":{"city":"Paris","days":[1,2,3]},"_meta":{"progressToken":"tok-7"}}}`

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		batch bool
		want  []want
	}{
		{"tools/call", toolsCall, false, []want{{KindRequest, "7", "tools/call", `"tok-7"`}}},
		{"request string id", `{"jsonrpc":"2.0","id":"abc","method":"ping"}`, false, []want{{KindRequest, `"abc"`, "ping", ""}}},
		{"request escaped string id kept raw", `{"jsonrpc":"2.0","id":"a\"b","method":"ping"}`, false, []want{{KindRequest, `"a\"b"`, "ping", ""}}},
		{"number ids as sent", `{"jsonrpc":"2.0","id":-1.5e3,"method":"m"}`, false, []want{{KindRequest, "-1.5e3", "m", ""}}},
		{"zero id", `{"jsonrpc":"2.0","id":0,"method":"m"}`, false, []want{{KindRequest, "0", "m", ""}}},
		{"big id", `{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"m"}`, false, []want{{KindRequest, "123456789012345678901234567890", "m", ""}}},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, false, []want{{KindNotification, "", "notifications/initialized", ""}}},
		{"progress notification", `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":42,"progress":1}}`, false,
			[]want{{KindNotification, "", "notifications/progress", "42"}}},
		{"progress token ignored on other notification", `{"jsonrpc":"2.0","method":"notifications/message","params":{"progressToken":42}}`, false,
			[]want{{KindNotification, "", "notifications/message", ""}}},
		{"meta token ignored on notification", `{"jsonrpc":"2.0","method":"notifications/progress","params":{"_meta":{"progressToken":1}}}`, false,
			[]want{{KindNotification, "", "notifications/progress", ""}}},
		{"params.progressToken ignored on request", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"progressToken":5}}`, false,
			[]want{{KindRequest, "1", "m", ""}}},
		{"nested params with token deeper is not it", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"x":{"_meta":{"progressToken":9}},"_meta":{"other":{"progressToken":8}}}}`, false,
			[]want{{KindRequest, "1", "m", ""}}},
		{"object token raw", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressToken": {"a":[1]} }}}`, false,
			[]want{{KindRequest, "1", "m", `{"a":[1]}`}}},
		{"params array", `{"jsonrpc":"2.0","id":1,"method":"m","params":[1,2,{"_meta":{"progressToken":1}}]}`, false, []want{{KindRequest, "1", "m", ""}}},
		{"key order free", `{"params":{"_meta":{"progressToken":"t"}},"method":"tools/call","id":3,"jsonrpc":"2.0"}`, false, []want{{KindRequest, "3", "tools/call", `"t"`}}},
		{"response", `{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}}`, false, []want{{KindResponse, "1", "", ""}}},
		{"response null result", `{"jsonrpc":"2.0","id":"x","result":null}`, false, []want{{KindResponse, `"x"`, "", ""}}},
		{"error response", `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope","data":{"x":1}}}`, false, []want{{KindError, "1", "", ""}}},
		{"error response null id", `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}`, false, []want{{KindError, "null", "", ""}}},
		{"escaped method", `{"jsonrpc":"2.0","id":1,"method":"tools\/call"}`, false, []want{{KindRequest, "1", "tools/call", ""}}},
		{"unicode escaped method", `{"jsonrpc":"2.0","id":1,"method":"\u0074ools/\u00e9\ud83d\ude00"}`, false, []want{{KindRequest, "1", "tools/é😀", ""}}},
		{"raw unicode method", `{"jsonrpc":"2.0","id":1,"method":"日本/語"}`, false, []want{{KindRequest, "1", "日本/語", ""}}},
		{"escaped keys", `{"json\u0072pc":"2.\u0030","\u0069d":1,"meth\u006fd":"m","params":{"\u005fmeta":{"progress\u0054oken":"t"}}}`, false,
			[]want{{KindRequest, "1", "m", `"t"`}}},
		{"whitespace", " \t\r\n{ \"jsonrpc\" : \"2.0\" ,\n\"id\" : 1 , \"method\" : \"m\" }\r\n ", false, []want{{KindRequest, "1", "m", ""}}},
		{"duplicate id last wins", `{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}`, false, []want{{KindRequest, "2", "m", ""}}},
		{"duplicate method last wins", `{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}`, false, []want{{KindRequest, "1", "b", ""}}},
		{"duplicate jsonrpc last wins", `{"jsonrpc":"1.0","jsonrpc":"2.0","method":"m"}`, false, []want{{KindNotification, "", "m", ""}}},
		{"duplicate token last wins", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressToken":1,"progressToken":2}}}`, false, []want{{KindRequest, "1", "m", "2"}}},
		{"unknown members ignored", `{"jsonrpc":"2.0","id":1,"method":"m","extra":[true,false,null]}`, false, []want{{KindRequest, "1", "m", ""}}},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"b"},{"jsonrpc":"2.0","id":2,"result":{}}]`, true,
			[]want{{KindRequest, "1", "a", ""}, {KindNotification, "", "b", ""}, {KindResponse, "2", "", ""}}},
		{"batch of one with spaces", ` [ {"jsonrpc":"2.0","method":"b"} ] `, true, []want{{KindNotification, "", "b", ""}}},
		{"batch with escaped methods", `[{"jsonrpc":"2.0","method":"\u0061"},{"jsonrpc":"2.0","method":"\u0062"}]`, true,
			[]want{{KindNotification, "", "a", ""}, {KindNotification, "", "b", ""}}},
	}
	var p Parser
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, batch, err := p.Parse([]byte(tc.in))
			require.Nil(t, err)
			assert.Equal(t, tc.batch, batch)
			got := make([]want, len(msgs))
			for i, m := range msgs {
				got[i] = view(m)
				assert.True(t, json.Valid(m.Raw), "Raw is one JSON value: %s", m.Raw)
				assert.Equal(t, strings.TrimSpace(string(m.Raw)), string(m.Raw))
			}
			assert.Equal(t, tc.want, got)
			assert.True(t, json.Valid([]byte(tc.in)))
		})
	}
}

func TestParseRaw(t *testing.T) {
	in := ` [ {"jsonrpc":"2.0","method":"a"} ,{"jsonrpc":"2.0","id":1,"result":1}]`
	var p Parser
	msgs, batch, err := p.Parse([]byte(in))
	require.Nil(t, err)
	require.True(t, batch)
	require.Len(t, msgs, 2)
	assert.Equal(t, `{"jsonrpc":"2.0","method":"a"}`, string(msgs[0].Raw))
	assert.Equal(t, `{"jsonrpc":"2.0","id":1,"result":1}`, string(msgs[1].Raw))
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		code int
		id   string // expected Error.ID, "" = nil
	}{
		{"empty", "", CodeParseError, ""},
		{"only spaces", "  \n", CodeParseError, ""},
		{"truncated", `{"jsonrpc":"2.0","id":1`, CodeParseError, ""},
		{"trailing garbage", `{"jsonrpc":"2.0","id":1,"method":"m"} x`, CodeParseError, ""},
		{"two values", `{"jsonrpc":"2.0","method":"m"}{"jsonrpc":"2.0","method":"m"}`, CodeParseError, ""},
		{"trailing comma", `{"jsonrpc":"2.0","method":"m",}`, CodeParseError, ""},
		{"single quotes", `{'jsonrpc':'2.0'}`, CodeParseError, ""},
		{"bad escape", `{"jsonrpc":"2.0","method":"\x"}`, CodeParseError, ""},
		{"short unicode escape", `{"jsonrpc":"2.0","method":"\u12"}`, CodeParseError, ""},
		{"control char in string", "{\"jsonrpc\":\"2.0\",\"method\":\"a\nb\"}", CodeParseError, ""},
		{"leading zero number", `{"jsonrpc":"2.0","id":01,"method":"m"}`, CodeParseError, ""},
		{"bad number", `{"jsonrpc":"2.0","id":1.,"method":"m"}`, CodeParseError, ""},
		{"bad literal", `{"jsonrpc":"2.0","id":1,"method":"m","x":tru}`, CodeParseError, ""},
		{"syntax error in params", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":[1,]}}`, CodeParseError, ""},
		{"syntax error in meta", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"_meta":{"progressToken":}}}`, CodeParseError, ""},
		{"syntax error in error", `{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x",}}`, CodeParseError, ""},
		{"unterminated batch", `[{"jsonrpc":"2.0","method":"m"}`, CodeParseError, ""},
		{"batch syntax error after invalid element", `[1, {"jsonrpc":"2.0",}]`, CodeParseError, ""},
		{"batch missing comma", `[{"jsonrpc":"2.0","method":"m"} {"jsonrpc":"2.0","method":"m"}]`, CodeParseError, ""},
		{"bare word", `hello`, CodeParseError, ""},
		{"missing jsonrpc", `{"id":1,"method":"m"}`, CodeInvalidRequest, "1"},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"m"}`, CodeInvalidRequest, "1"},
		{"version as number", `{"jsonrpc":2.0,"id":"a","method":"m"}`, CodeInvalidRequest, `"a"`},
		{"duplicate jsonrpc last wins (bad)", `{"jsonrpc":"2.0","jsonrpc":"2","id":1,"method":"m"}`, CodeInvalidRequest, "1"},
		{"null id in request", `{"jsonrpc":"2.0","id":null,"method":"m"}`, CodeInvalidRequest, ""},
		{"object id", `{"jsonrpc":"2.0","id":{"a":1},"method":"m"}`, CodeInvalidRequest, ""},
		{"array id", `{"jsonrpc":"2.0","id":[1],"method":"m"}`, CodeInvalidRequest, ""},
		{"bool id", `{"jsonrpc":"2.0","id":true,"method":"m"}`, CodeInvalidRequest, ""},
		{"method not string", `{"jsonrpc":"2.0","id":1,"method":5}`, CodeInvalidRequest, "1"},
		{"method null", `{"jsonrpc":"2.0","id":1,"method":null}`, CodeInvalidRequest, "1"},
		{"params string", `{"jsonrpc":"2.0","id":1,"method":"m","params":"x"}`, CodeInvalidRequest, "1"},
		{"params null", `{"jsonrpc":"2.0","id":1,"method":"m","params":null}`, CodeInvalidRequest, "1"},
		{"method and result", `{"jsonrpc":"2.0","id":1,"method":"m","result":{}}`, CodeInvalidRequest, "1"},
		{"result and error", `{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"x"}}`, CodeInvalidRequest, "1"},
		{"response without id", `{"jsonrpc":"2.0","result":{}}`, CodeInvalidRequest, ""},
		{"response null id", `{"jsonrpc":"2.0","id":null,"result":{}}`, CodeInvalidRequest, ""},
		{"error without id", `{"jsonrpc":"2.0","error":{"code":1,"message":"x"}}`, CodeInvalidRequest, ""},
		{"error not object", `{"jsonrpc":"2.0","id":1,"error":"bad"}`, CodeInvalidRequest, "1"},
		{"error code float", `{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"x"}}`, CodeInvalidRequest, "1"},
		{"error code exponent", `{"jsonrpc":"2.0","id":1,"error":{"code":1e3,"message":"x"}}`, CodeInvalidRequest, "1"},
		{"error code overflow", `{"jsonrpc":"2.0","id":1,"error":{"code":9223372036854775808,"message":"x"}}`, CodeInvalidRequest, "1"},
		{"error code string", `{"jsonrpc":"2.0","id":1,"error":{"code":"1","message":"x"}}`, CodeInvalidRequest, "1"},
		{"error missing message", `{"jsonrpc":"2.0","id":1,"error":{"code":1}}`, CodeInvalidRequest, "1"},
		{"error message not string", `{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":null}}`, CodeInvalidRequest, "1"},
		{"no method result or error", `{"jsonrpc":"2.0","id":1}`, CodeInvalidRequest, "1"},
		{"empty object", `{}`, CodeInvalidRequest, ""},
		{"number", `42`, CodeInvalidRequest, ""},
		{"string", `"x"`, CodeInvalidRequest, ""},
		{"null", `null`, CodeInvalidRequest, ""},
		{"empty batch", `[]`, CodeInvalidRequest, ""},
		{"empty batch with spaces", ` [ ] `, CodeInvalidRequest, ""},
		{"batch with invalid element", `[{"jsonrpc":"2.0","method":"m"},{"jsonrpc":"2.0","id":5,"method":3}]`, CodeInvalidRequest, "5"},
		{"batch with number", `[{"jsonrpc":"2.0","method":"m"},1]`, CodeInvalidRequest, ""},
		{"nested batch", `[[{"jsonrpc":"2.0","method":"m"}]]`, CodeInvalidRequest, ""},
		{"batch first invalid id reported", `[{"jsonrpc":"1","id":"a"},{"jsonrpc":"1","id":"b"}]`, CodeInvalidRequest, `"a"`},
	}
	var p Parser
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msgs, _, err := p.Parse([]byte(tc.in))
			require.NotNil(t, err)
			assert.Nil(t, msgs)
			assert.Equal(t, tc.code, err.Code, err.Message)
			if tc.id == "" {
				assert.Nil(t, err.ID)
			} else {
				assert.Equal(t, tc.id, string(err.ID))
			}
			assert.Equal(t, tc.code == CodeInvalidRequest, json.Valid([]byte(tc.in)), "parse errors are exactly the invalid JSON")
			var e error = err
			assert.True(t, errors.Is(e, &Error{Code: tc.code}))
			assert.Equal(t, tc.code == CodeParseError, errors.Is(e, ErrParse))
			assert.Equal(t, tc.code == CodeInvalidRequest, errors.Is(e, ErrInvalidRequest))
			assert.Contains(t, err.Error(), "jsonrpc: ")
		})
	}
}

func TestParseDepth(t *testing.T) {
	var validity []bool
	for _, depth := range []int{maxDepth - 2, maxDepth - 1, maxDepth, maxDepth + 1} {
		params := strings.Repeat("[", depth) + strings.Repeat("]", depth)
		in := `{"jsonrpc":"2.0","id":1,"method":"m","params":{"x":` + params + `}}` // params nests 2 more
		var p Parser
		_, _, err := p.Parse([]byte(in))
		valid := json.Valid([]byte(in))
		validity = append(validity, valid)
		if valid {
			assert.Nil(t, err, "depth %d", depth)
		} else {
			require.NotNil(t, err, "depth %d", depth)
			assert.Equal(t, CodeParseError, err.Code)
		}
		_, ok := Lookup([]byte(in), "params", "x")
		assert.Equal(t, valid, ok, "Lookup depth %d", depth)
	}
	assert.Equal(t, []bool{true, false, false, false}, validity, "the cases straddle encoding/json's limit")
}

// TestParseLimited: ParseLimited refuses exactly the nesting past its limit
// (the message object at depth 1, a batch's array around it too), as a
// parse error that says so, where Parse accepts it.
func TestParseLimited(t *testing.T) {
	const limit = 1000
	msg := func(depth int) string { // the message object and params are 2 levels
		return `{"jsonrpc":"2.0","id":1,"method":"m","params":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
	}
	for _, c := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"at the limit", msg(limit), true},
		{"past the limit", msg(limit + 1), false},
		{"batch at the limit", "[" + msg(limit-1) + "]", true},
		{"batch past the limit", "[" + msg(limit) + "]", false},
		{"deep in a string", `{"jsonrpc":"2.0","id":1,"method":"m","params":{"x":"` + strings.Repeat("[", 2*limit) + `"}}`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p Parser
			_, _, err := p.Parse([]byte(c.in))
			require.Nil(t, err, "Parse accepts it")
			msgs, _, err := p.ParseLimited([]byte(c.in), limit)
			if c.ok {
				require.Nil(t, err)
				assert.NotEmpty(t, msgs)
				return
			}
			require.NotNil(t, err)
			assert.Equal(t, CodeParseError, err.Code)
			assert.Contains(t, err.Message, "nesting deeper than 1000")
			assert.Nil(t, msgs)
			_, _, err = p.Parse([]byte(c.in))
			assert.Nil(t, err, "the limit does not stay with the Parser")
		})
	}
	var p Parser
	_, _, err := p.ParseLimited([]byte(`{"jsonrpc":"2.0","id":1,"method":"m","params":[}`), limit)
	require.NotNil(t, err)
	assert.Contains(t, err.Message, "invalid JSON", "a syntax error is not called too deep")
}

func TestParserReuse(t *testing.T) {
	var p Parser
	msgs, _, err := p.Parse([]byte(`[{"jsonrpc":"2.0","id":1,"method":"\u0061"},{"jsonrpc":"2.0","id":2,"method":"b"}]`))
	require.Nil(t, err)
	require.Len(t, msgs, 2)
	_, _, err = p.Parse([]byte(`{`))
	require.NotNil(t, err)
	msgs, batch, err := p.Parse([]byte(`{"jsonrpc":"2.0","id":3,"method":"\u0063"}`))
	require.Nil(t, err)
	assert.False(t, batch)
	require.Len(t, msgs, 1)
	assert.Equal(t, want{KindRequest, "3", "c", ""}, view(msgs[0]))
}

func TestKindString(t *testing.T) {
	for k, s := range map[Kind]string{KindInvalid: "invalid", KindRequest: "request", KindNotification: "notification", KindResponse: "response", KindError: "error", 9: "Kind(9)"} {
		assert.Equal(t, s, k.String())
	}
}

func TestLookup(t *testing.T) {
	body := []byte(` {"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"x":1,"x":[2]},"params":{"name":"echo","n\u0061me2":"e"}} `)
	tests := []struct {
		path []string
		want string
		ok   bool
	}{
		{[]string{"result", "protocolVersion"}, `"2025-06-18"`, true},
		{[]string{"result", "capabilities", "tools"}, `{}`, true},
		{[]string{"result", "x"}, `[2]`, true},
		{[]string{"params", "name"}, `"echo"`, true},
		{[]string{"params", "name2"}, `"e"`, true},
		{[]string{"id"}, `1`, true},
		{[]string{"params", "missing"}, ``, false},
		{[]string{"id", "x"}, ``, false},
		{[]string{"nope"}, ``, false},
		{nil, strings.TrimSpace(string(body)), true},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.path, "."), func(t *testing.T) {
			got, ok := Lookup(body, tc.path...)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, string(got))
		})
	}
	_, ok := Lookup([]byte(`{"a":`), "a")
	assert.False(t, ok)
	_, ok = Lookup([]byte(`{"a":1,"b":}`), "a")
	assert.False(t, ok, "the object walked through must be well-formed")
	_, ok = Lookup([]byte(`{"a":[1,}`), "a")
	assert.False(t, ok)
}

func TestUnquote(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{`"abc"`, "abc", true},
		{`""`, "", true},
		{`"a\"b\\c\/d\b\f\n\r\t"`, "a\"b\\c/d\b\f\n\r\t", true},
		{`"\u00e9\ud83d\ude00"`, "é😀", true},
		{`"\ud83d"`, "\uFFFD", true},
		{`"\ud83dx"`, "\uFFFDx", true},
		{`"\ude00\u0041"`, "\uFFFDA", true},
		{`"abc`, "", false},
		{`abc`, "", false},
		{`"a"b`, "", false},
		{`"\x"`, "", false},
		{"\"a\tb\"", "", false},
		{``, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := Unquote([]byte(tc.in))
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, got)
			if ok {
				var ref string
				require.NoError(t, json.Unmarshal([]byte(tc.in), &ref))
				assert.Equal(t, ref, got, "agrees with encoding/json")
			}
		})
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\back`, "ctl\x00\x01\x1f\n\r\t\b\f", "uni é 日本 😀", "bad\xffutf8\xc3", "line\u2028sep\u2029", "<html>&"} {
		got := AppendString([]byte("x"), s)
		require.Equal(t, byte('x'), got[0])
		var back string
		require.NoError(t, json.Unmarshal(got[1:], &back), "%s", got)
		ref, err := json.Marshal(s)
		require.NoError(t, err)
		var refBack string
		require.NoError(t, json.Unmarshal(ref, &refBack))
		assert.Equal(t, refBack, back, "same value as encoding/json for %q", s)
		u, ok := Unquote(got[1:])
		assert.True(t, ok)
		assert.Equal(t, back, u)
	}
	assert.Equal(t, `"a\u0001\n\u2028"`, string(AppendString(nil, "a\x01\n\u2028")))
}

func TestAppendError(t *testing.T) {
	tests := []struct {
		name    string
		id      []byte
		code    int
		message string
		data    []byte
		wantID  any
	}{
		{"null id", nil, CodeParseError, "Parse error", nil, nil},
		{"number id", []byte("42"), CodeInvalidRequest, "Invalid Request", nil, float64(42)},
		{"string id", []byte(`"a\"b"`), CodeServerError, "Bad Request: \"quoted\"\n", nil, `a"b`},
		{"with data", []byte("1"), -32022, "Unsupported protocol version", []byte(`{"supported":["2025-06-18"],"requested":"1999"}`), float64(1)},
		{"session not found", nil, CodeSessionNotFound, "Session not found", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := AppendError(nil, tc.id, tc.code, tc.message, tc.data)
			var got struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      any             `json:"id"`
				Error   json.RawMessage `json:"error"`
			}
			require.NoError(t, json.Unmarshal(out, &got), "%s", out)
			assert.Equal(t, "2.0", got.JSONRPC)
			assert.Equal(t, tc.wantID, got.ID)
			var e struct {
				Code    int             `json:"code"`
				Message string          `json:"message"`
				Data    json.RawMessage `json:"data"`
			}
			require.NoError(t, json.Unmarshal(got.Error, &e))
			assert.Equal(t, tc.code, e.Code)
			assert.Equal(t, tc.message, e.Message)
			assert.Equal(t, string(tc.data), string(e.Data))

			var p Parser
			msgs, _, perr := p.Parse(out)
			require.Nil(t, perr)
			require.Len(t, msgs, 1)
			assert.Equal(t, KindError, msgs[0].Kind)
		})
	}
}

// firstSpecial is specialMask's lowest flag as a byte index, 8 if none.
func firstSpecial(w uint64) int {
	return bits.TrailingZeros64(specialMask(w)) >> 3
}

func TestSpecialMask(t *testing.T) {
	// Every byte value in every lane, against the byte-wise definition.
	for lane := range 8 {
		for c := range 256 {
			var b [8]byte
			for i := range b {
				b[i] = 'a'
			}
			b[lane] = byte(c)
			w := uint64(0)
			for i := 7; i >= 0; i-- {
				w = w<<8 | uint64(b[i])
			}
			want := 8
			if c == '"' || c == '\\' || c < 0x20 {
				want = lane
			}
			require.Equal(t, want, firstSpecial(w), "lane %d byte %#x", lane, c)
		}
	}
	// Mixed lanes, including high bytes next to matches (borrow propagation), and random
	// words over the bytes around the boundaries.
	words := []string{"\xff\xff\xff\xff\xff\xff\xff\xff", "\x80\x81\x20\x21\x5b\x5d\x7f\xfe", "\x00\x01\x02\x03\x04\x05\x06\x07", "\x21\x22\xff\x00\xff\x5c\xff\x1f", "\x20\x20\x20\x20\x20\x20\x20\x20"}
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "\x00\x01\x1f\x20\x21\x22\x23\x5b\x5c\x5d\x7f\x80\xa2\xdc\xff a"
	for range 20000 {
		var b [8]byte
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		words = append(words, string(b[:]))
	}
	for _, s := range words {
		w := uint64(0)
		want := 8
		for i := 7; i >= 0; i-- {
			w = w<<8 | uint64(s[i])
			if c := s[i]; c == '"' || c == '\\' || c < 0x20 {
				want = i
			}
		}
		require.Equal(t, want, firstSpecial(w), "%q", s)
	}
}
