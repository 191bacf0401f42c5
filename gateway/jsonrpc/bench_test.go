package jsonrpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fastjson"
)

// Typical MCP bodies the gateway routes.
const (
	benchToolsCall = `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"search_documents","arguments":{"query":"quarterly revenue by region","limit":20,"filters":{"year":[2024,2025],"tags":["finance","report"]}},"_meta":{"progressToken":"c6b3f1a2-42"}}}`
	benchResponse  = `{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"Found 3 documents: Q1 revenue rose 4.2% in EMEA, 3.1% in APAC and fell 0.4% in the Americas. \"Summary\" attached."}],"structuredContent":{"count":3,"ids":[101,202,303]},"isError":false}}`
	benchProgress  = `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"c6b3f1a2-42","progress":30,"total":100,"message":"scanning index"}}`
)

// candidate is one way of reading the routing envelope, kept here for the parser
// comparison (see BenchmarkParse). Only the scanner is used by the package.
type candidate interface {
	parse(data []byte) ([]Message, bool, error)
}

var errCandidate = errors.New("rejected")

type scannerCandidate struct{ p Parser }

func (c *scannerCandidate) parse(data []byte) ([]Message, bool, error) {
	msgs, batch, err := c.p.Parse(data)
	if err != nil {
		return nil, batch, err
	}
	return msgs, batch, nil
}

// fastjsonCandidate uses a reused fastjson.Parser. validate adds fastjson.ValidateBytes,
// since fastjson's parser alone checks string contents (escapes, control characters)
// lazily and so accepts some invalid JSON that Parse must reject.
type fastjsonCandidate struct {
	p        fastjson.Parser
	validate bool
	msgs     []Message
	arena    []byte
}

func (c *fastjsonCandidate) parse(data []byte) ([]Message, bool, error) {
	if c.validate {
		if err := fastjson.ValidateBytes(data); err != nil {
			return nil, false, err
		}
	}
	v, err := c.p.ParseBytes(data)
	if err != nil {
		return nil, false, err
	}
	c.msgs, c.arena = c.msgs[:0], c.arena[:0]
	if v.Type() == fastjson.TypeArray {
		arr, _ := v.Array()
		if len(arr) == 0 {
			return nil, true, errCandidate
		}
		for _, el := range arr {
			if err := c.one(el); err != nil {
				return nil, true, err
			}
		}
		return c.msgs, true, nil
	}
	if err := c.one(v); err != nil {
		return nil, false, err
	}
	return c.msgs, false, nil
}

func (c *fastjsonCandidate) raw(v *fastjson.Value) []byte {
	n := len(c.arena)
	c.arena = v.MarshalTo(c.arena)
	return c.arena[n:len(c.arena):len(c.arena)]
}

func (c *fastjsonCandidate) one(v *fastjson.Value) error {
	o, err := v.Object()
	if err != nil {
		return errCandidate
	}
	ver := o.Get("jsonrpc")
	if ver == nil || ver.Type() != fastjson.TypeString || string(ver.GetStringBytes()) != "2.0" {
		return errCandidate
	}
	var m Message
	id, method, params, result, rpcErr := o.Get("id"), o.Get("method"), o.Get("params"), o.Get("result"), o.Get("error")
	if id != nil {
		switch id.Type() {
		case fastjson.TypeString, fastjson.TypeNumber, fastjson.TypeNull:
		default:
			return errCandidate
		}
	}
	if params != nil && params.Type() != fastjson.TypeObject && params.Type() != fastjson.TypeArray {
		return errCandidate
	}
	switch {
	case method != nil:
		if method.Type() != fastjson.TypeString || result != nil || rpcErr != nil {
			return errCandidate
		}
		m.Method = method.GetStringBytes()
		if id != nil {
			if id.Type() == fastjson.TypeNull {
				return errCandidate
			}
			m.Kind, m.ID = KindRequest, c.raw(id)
			if t := params.Get("_meta", "progressToken"); t != nil {
				m.ProgressToken = c.raw(t)
			}
		} else {
			m.Kind = KindNotification
			if string(m.Method) == "notifications/progress" {
				if t := params.Get("progressToken"); t != nil {
					m.ProgressToken = c.raw(t)
				}
			}
		}
	case result != nil && rpcErr == nil:
		if id == nil || id.Type() == fastjson.TypeNull {
			return errCandidate
		}
		m.Kind, m.ID = KindResponse, c.raw(id)
	case rpcErr != nil && result == nil:
		if id == nil || rpcErr.Type() != fastjson.TypeObject {
			return errCandidate
		}
		code, msg := rpcErr.Get("code"), rpcErr.Get("message")
		if code == nil || code.Type() != fastjson.TypeNumber || msg == nil || msg.Type() != fastjson.TypeString {
			return errCandidate
		}
		if _, err := code.Int64(); err != nil {
			return errCandidate
		}
		m.Kind, m.ID = KindError, c.raw(id)
	default:
		return errCandidate
	}
	c.msgs = append(c.msgs, m)
	return nil
}

// encodingJSONCandidate decodes the envelope with encoding/json into json.RawMessage
// fields, then decodes the method and the progress token paths.
type encodingJSONCandidate struct{ msgs []Message }

type envelope struct {
	JSONRPC json.RawMessage `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  json.RawMessage `json:"method"`
	Params  json.RawMessage `json:"params"`
	Result  json.RawMessage `json:"result"`
	Error   *struct {
		Code    *int64  `json:"code"`
		Message *string `json:"message"`
	} `json:"error"`
}

type paramsTokens struct {
	Meta *struct {
		ProgressToken json.RawMessage `json:"progressToken"`
	} `json:"_meta"`
	ProgressToken json.RawMessage `json:"progressToken"`
}

func (c *encodingJSONCandidate) parse(data []byte) ([]Message, bool, error) {
	if !json.Valid(data) {
		return nil, false, errCandidate
	}
	c.msgs = c.msgs[:0]
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var elems []json.RawMessage
		if err := json.Unmarshal(data, &elems); err != nil || len(elems) == 0 {
			return nil, true, errCandidate
		}
		for _, el := range elems {
			if err := c.one(el); err != nil {
				return nil, true, err
			}
		}
		return c.msgs, true, nil
	}
	if err := c.one(data); err != nil {
		return nil, false, err
	}
	return c.msgs, false, nil
}

func (c *encodingJSONCandidate) one(data []byte) error {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return errCandidate
	}
	var ver string
	if json.Unmarshal(env.JSONRPC, &ver) != nil || ver != "2.0" {
		return errCandidate
	}
	var m Message
	idNull := string(env.ID) == "null"
	if env.ID != nil && !idNull && env.ID[0] != '"' && env.ID[0] != '-' && (env.ID[0] < '0' || env.ID[0] > '9') {
		return errCandidate
	}
	if env.Params != nil && env.Params[0] != '{' && env.Params[0] != '[' {
		return errCandidate
	}
	switch {
	case env.Method != nil:
		var method string
		if json.Unmarshal(env.Method, &method) != nil || env.Result != nil || env.Error != nil {
			return errCandidate
		}
		m.Method = []byte(method)
		var pt paramsTokens
		if env.Params != nil && env.Params[0] == '{' {
			if err := json.Unmarshal(env.Params, &pt); err != nil {
				return errCandidate
			}
		}
		if env.ID != nil {
			if idNull {
				return errCandidate
			}
			m.Kind, m.ID = KindRequest, env.ID
			if pt.Meta != nil {
				m.ProgressToken = pt.Meta.ProgressToken
			}
		} else {
			m.Kind = KindNotification
			if method == "notifications/progress" {
				m.ProgressToken = pt.ProgressToken
			}
		}
	case env.Result != nil && env.Error == nil:
		if env.ID == nil || idNull {
			return errCandidate
		}
		m.Kind, m.ID = KindResponse, env.ID
	case env.Error != nil && env.Result == nil:
		if env.ID == nil || env.Error.Code == nil || env.Error.Message == nil {
			return errCandidate
		}
		m.Kind, m.ID = KindError, env.ID
	default:
		return errCandidate
	}
	c.msgs = append(c.msgs, m)
	return nil
}

var benchInputs = []struct{ name, body string }{
	{"tools-call", benchToolsCall},
	{"response", benchResponse},
	{"progress", benchProgress},
}

func candidates() []struct {
	name string
	c    candidate
} {
	return []struct {
		name string
		c    candidate
	}{
		{"scanner", &scannerCandidate{}},
		{"fastjson", &fastjsonCandidate{}},
		{"fastjson-validated", &fastjsonCandidate{validate: true}},
		{"encoding-json", &encodingJSONCandidate{}},
	}
}

// TestCandidatesAgree keeps the comparison honest: every candidate must extract the same
// envelope from the benchmark inputs.
func TestCandidatesAgree(t *testing.T) {
	for _, in := range benchInputs {
		var p Parser
		ref, _, perr := p.Parse([]byte(in.body))
		require.Nil(t, perr)
		for _, cand := range candidates() {
			msgs, batch, err := cand.c.parse([]byte(in.body))
			require.NoError(t, err, "%s/%s", in.name, cand.name)
			assert.False(t, batch)
			require.Len(t, msgs, 1)
			assert.Equal(t, view(ref[0]), view(msgs[0]), "%s/%s", in.name, cand.name)
		}
	}
}

// BenchmarkParse compares the candidate parsers on typical bodies; the package uses the
// scanner. Run: go test -run '^$' -bench BenchmarkParse -benchtime 1s ./gateway/jsonrpc/
func BenchmarkParse(b *testing.B) {
	for _, in := range benchInputs {
		data := []byte(in.body)
		for _, cand := range candidates() {
			b.Run(in.name+"/"+cand.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					if _, _, err := cand.c.parse(data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkParseParallel runs the scanner with one Parser per goroutine, as pooled
// Parsers are used by the gateway's handlers.
func BenchmarkParseParallel(b *testing.B) {
	data := []byte(benchToolsCall)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	b.RunParallel(func(pb *testing.PB) {
		var p Parser
		for pb.Next() {
			if _, _, err := p.Parse(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkParseLimited compares Parse with ParseLimited (what the gateway
// parses clients' bodies with) on a request: the limit costs nothing per value.
// Run: go test -run '^$' -bench BenchmarkParseLimited ./gateway/jsonrpc/
func BenchmarkParseLimited(b *testing.B) {
	data := []byte(benchToolsCall)
	for _, c := range []struct {
		name  string
		parse func(*Parser) ([]Message, bool, *Error)
	}{
		{"Parse", func(p *Parser) ([]Message, bool, *Error) { return p.Parse(data) }},
		{"ParseLimited", func(p *Parser) ([]Message, bool, *Error) { return p.ParseLimited(data, 1000) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			var p Parser
			for b.Loop() {
				if _, _, err := c.parse(&p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchLog is an upstream's notifications/message event as the load harness's
// mock pushes it (its payload, padding and _meta).
const benchLog = `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","logger":"loadtest","data":{"pad":""},"_meta":{"seq":123456,"sent":1733380000123456789}}}`

// BenchmarkParseEnvelope compares Parse with ParseEnvelope (what the gateway
// classifies upstream events with) on a notification whose params need no look,
// and on a progress notification and a request, whose params ParseEnvelope looks
// into after all. Run: go test -run '^$' -bench BenchmarkParseEnvelope ./gateway/jsonrpc/
func BenchmarkParseEnvelope(b *testing.B) {
	for _, in := range []struct{ name, body string }{
		{"log", benchLog}, {"progress", benchProgress}, {"tools_call", benchToolsCall},
	} {
		data := []byte(in.body)
		for _, fn := range []struct {
			name  string
			parse func(*Parser, []byte) ([]Message, bool, *Error)
		}{{"Parse", (*Parser).Parse}, {"ParseEnvelope", (*Parser).ParseEnvelope}} {
			b.Run(in.name+"/"+fn.name, func(b *testing.B) {
				var p Parser
				b.ReportAllocs()
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					if _, _, err := fn.parse(&p, data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	data := []byte(benchResponse)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := Lookup(data, "result", "isError"); !ok {
			b.Fatal("not found")
		}
	}
}

func BenchmarkAppendError(b *testing.B) {
	buf := make([]byte, 0, 256)
	id := []byte(`"req-17"`)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendError(buf[:0], id, CodeInvalidRequest, "Invalid Request: method must be a string", nil)
	}
}
