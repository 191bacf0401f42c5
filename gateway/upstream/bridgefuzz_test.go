package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// sameJSON reports whether a and b hold the same JSON value (numbers
// compared as written, strings after unescaping).
func sameJSON(a, b []byte) bool {
	var x, y any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&x) != nil || db.Decode(&y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// objectOf decodes an object's members (nil if data is not an object).
func objectOf(data []byte) map[string]json.RawMessage {
	if raw, ok := jsonrpc.Lookup(data); !ok || len(raw) == 0 || raw[0] != '{' {
		return nil
	}
	m := map[string]json.RawMessage{}
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	return m
}

// FuzzBridgeRewrite: the bridges' rewriting helpers (setParam, withMeta,
// withoutStatelessMeta, mapID, completeResult) never panic, turn valid
// JSON into valid JSON, set what they set, and keep every other member.
func FuzzBridgeRewrite(f *testing.F) {
	f.Add([]byte(`{"name":"x","_meta":{"progressToken":7,"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}`), []byte(`"tok"`), []byte(`"s1"`), []byte(`{"a":[1,"<"]}`))
	f.Add([]byte(`{"_meta":{"io.modelcontextprotocol/clientInfo":{},"io.modelcontextprotocol/logLevel":"info"}}`), []byte(`1.50`), []byte(`9`), []byte(`null`))
	f.Add([]byte(`[1,2]`), []byte(`{}`), []byte(`"s1"`), []byte(`"\u00e9"`))
	f.Add([]byte(`null`), []byte(`null`), []byte(`"s1"`), []byte(`-0`))
	f.Add([]byte(`{"_meta":5,"_meta":{"x":1}}`), []byte(`[]`), []byte(`"s\u0031"`), []byte(`"x"`))
	f.Fuzz(func(t *testing.T, params, val, up, id []byte) {
		if !json.Valid(val) || !json.Valid(id) || !json.Valid(up) {
			return // the bridges only ever set values they decoded or built
		}
		in := objectOf(params)
		empty := len(bytes.TrimSpace(params)) == 0 || string(bytes.TrimSpace(params)) == "null"
		// keep checks that out holds in's members but those in skip.
		keep := func(what string, out []byte, in map[string]json.RawMessage, skip ...string) {
			t.Helper()
			got := objectOf(out)
			if got == nil {
				t.Fatalf("%s: %q gave %q, not an object", what, params, out)
			}
			for k, v := range in {
				if k == "" || strings.ContainsRune(k, '\uFFFD') || contains(skip, k) {
					continue
				}
				if !sameJSON(got[k], v) {
					t.Fatalf("%s: member %q of %q changed: %q", what, k, params, out)
				}
			}
		}

		out := setParam(params, "resultType", val)
		switch {
		case in != nil || empty:
			keep("setParam", out, in, "resultType")
			if got, _ := jsonrpc.Lookup(out, "resultType"); !sameJSON(got, val) {
				t.Fatalf("setParam(%q, %q) = %q", params, val, out)
			}
			if _, ok := jsonrpc.Lookup(setParam(params, "resultType", nil), "resultType"); ok {
				t.Fatalf("setParam(%q, nil) kept the key", params)
			}
		case !bytes.Equal(out, params):
			t.Fatalf("setParam changed a non-object: %q -> %q", params, out)
		}

		out = withMeta(params, map[string]json.RawMessage{"progressToken": val, MetaSubscriptionID: id})
		switch {
		case in != nil || empty:
			keep("withMeta", out, in, "_meta")
			for k, v := range map[string][]byte{"progressToken": val, MetaSubscriptionID: id} {
				if got, _ := jsonrpc.Lookup(out, "_meta", k); !sameJSON(got, v) {
					t.Fatalf("withMeta(%q): _meta.%s = %q, want %q (%q)", params, k, got, v, out)
				}
			}
			if meta := objectOf(in["_meta"]); meta != nil {
				outMeta, _ := jsonrpc.Lookup(out, "_meta")
				keep("withMeta _meta", outMeta, meta, "progressToken", MetaSubscriptionID)
			}
		case !bytes.Equal(out, params):
			t.Fatalf("withMeta changed a non-object: %q -> %q", params, out)
		}

		out = withoutStatelessMeta(params)
		if json.Valid(params) && !json.Valid(out) {
			t.Fatalf("withoutStatelessMeta(%q) = %q, not JSON", params, out)
		}
		if meta := objectOf(in["_meta"]); in != nil && meta != nil {
			keep("withoutStatelessMeta", out, in, "_meta")
			stateless := []string{MetaProtocolVersion, MetaClientCapabilities, MetaClientInfo, MetaLogLevel}
			for _, k := range stateless {
				if _, ok := jsonrpc.Lookup(out, "_meta", k); ok {
					t.Fatalf("withoutStatelessMeta(%q) kept %s: %q", params, k, out)
				}
			}
			if outMeta, ok := jsonrpc.Lookup(out, "_meta"); ok {
				keep("withoutStatelessMeta _meta", outMeta, meta, stateless...)
			}
		}

		// params as a whole upstream message: mapID puts the client's id on
		// the response to up, and nothing else changes.
		msg := params
		e, ok := decodeEnvelope(msg)
		out = mapID(msg, up, id)
		if !ok || string(e.ID) != string(up) {
			if !bytes.Equal(out, msg) {
				t.Fatalf("mapID changed another message: %q -> %q", msg, out)
			}
		} else {
			if !json.Valid(out) {
				t.Fatalf("mapID(%q) = %q, not JSON", msg, out)
			}
			if got, _ := jsonrpc.Lookup(out, "id"); !sameJSON(got, id) {
				t.Fatalf("mapID(%q, %s -> %s) = %q", msg, up, id, out)
			}
			for _, k := range []string{"method", "params", "result", "error"} {
				was, had := jsonrpc.Lookup(msg, k)
				got, has := jsonrpc.Lookup(out, k)
				if had != has || had && !sameJSON(was, got) {
					t.Fatalf("mapID(%q): member %s changed: %q", msg, k, out)
				}
			}
		}
		out = completeResult(msg)
		if json.Valid(msg) && !json.Valid(out) {
			t.Fatalf("completeResult(%q) = %q, not JSON", msg, out)
		}
		if was, had := jsonrpc.Lookup(msg, "id"); had {
			if got, _ := jsonrpc.Lookup(out, "id"); !sameJSON(was, got) {
				t.Fatalf("completeResult(%q) changed the id: %q", msg, out)
			}
		}
		if len(out) > 6*len(msg)+64 {
			t.Fatalf("completeResult(%q) grew to %d bytes", msg, len(out))
		}
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// scriptTransport is a session-era upstream whose sessions answer every
// request with the script's messages ($ID replaced by the request's id),
// as a stream, or as JSON when the script's first line is "json".
type scriptTransport struct {
	script [][]byte
	tag    string // put in every message of this transport's sessions' answers ($TAG)
	mu     sync.Mutex
	sent   [][]byte
}

func (t *scriptTransport) Close() error { return nil }
func (t *scriptTransport) Connect(context.Context, []byte) (Session, []byte, error) {
	return &scriptSession{t: t}, []byte(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25",` +
		`"capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true}}}}`), nil
}

type scriptSession struct{ t *scriptTransport }

func (s *scriptSession) ID() string                             { return "" }
func (s *scriptSession) Version() string                        { return "2025-11-25" }
func (s *scriptSession) Listen(context.Context) (Stream, error) { return nil, ErrNotSupported }
func (s *scriptSession) Close(context.Context) error            { return nil }
func (s *scriptSession) Send(_ context.Context, body []byte) (*Reply, error) {
	s.t.mu.Lock()
	s.t.sent = append(s.t.sent, append([]byte(nil), body...))
	s.t.mu.Unlock()
	e, _ := decodeEnvelope(body)
	if !e.isRequest() || strings.HasPrefix(e.Method, "resources/") {
		return &Reply{Accepted: true}, nil
	}
	var msgs []string
	for _, line := range s.t.script {
		line = bytes.ReplaceAll(line, []byte("$ID"), e.ID)
		msgs = append(msgs, string(bytes.ReplaceAll(line, []byte("$TAG"), []byte(s.t.tag))))
	}
	if len(msgs) > 0 && msgs[0] == "json" {
		if len(msgs) < 2 {
			return nil, errors.New("scripted failure")
		}
		return &Reply{JSON: []byte(msgs[1])}, nil
	}
	return &Reply{Stream: &sliceStream{msgs: msgs}}, nil
}

// readReply returns a reply's messages (at most max; the first only of a
// listen stream, which runs until closed) and how the stream ended.
func readReply(r *Reply, max int) ([][]byte, error) {
	switch {
	case r.JSON != nil:
		return [][]byte{r.JSON}, nil
	case r.Stream == nil:
		return nil, nil
	}
	defer r.Stream.Close()
	var out [][]byte
	for len(out) < max {
		m, err := r.Stream.Next()
		if err != nil {
			return out, err
		}
		out = append(out, append([]byte(nil), m...))
		if _, ok := r.Stream.(*listenSub); ok {
			break
		}
	}
	return out, nil
}

// checkPoolAnswer checks what the pool answered a request of id (token
// its progress token, nil if none): JSON messages only, every response
// under the client's id, every progress notification under its token,
// nothing of another transport's sessions (foreign).
func checkPoolAnswer(t *testing.T, body []byte, msgs [][]byte, id, token []byte, foreign string) {
	t.Helper()
	for _, m := range msgs {
		if !json.Valid(m) {
			t.Fatalf("%q: the pool answered invalid JSON %q", body, m)
		}
		if foreign != "" && bytes.Contains(m, []byte(foreign)) {
			t.Fatalf("%q: another owner's session reached the client: %q", body, m)
		}
		_, isResult := jsonrpc.Lookup(m, "result")
		_, isError := jsonrpc.Lookup(m, "error")
		method, hasMethod := jsonrpc.Lookup(m, "method")
		if (isResult || isError) && !hasMethod {
			if got, _ := jsonrpc.Lookup(m, "id"); !sameJSON(got, id) {
				t.Fatalf("%q: answered under id %s, want %s: %q", body, got, id, m)
			}
		}
		if string(method) == `"notifications/progress"` {
			if got, _ := jsonrpc.Lookup(m, "params", "progressToken"); token == nil || !sameJSON(got, token) {
				t.Fatalf("%q: progress under token %s, want %s: %q", body, got, token, m)
			}
		}
	}
}

// FuzzPoolDo: a stateless request of any bytes over a pooled session
// whose upstream answers with any messages. The pool never panics, answers
// valid JSON, every response under the client's id (as the gateway's
// parser reads it) and progress under the client's token; an
// input_required answer's requestState is refused to another owner, and
// its owner's retry, with any inputResponses, is answered the same way
// and in time.
func FuzzPoolDo(f *testing.F) {
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"progressToken":"p"}`
	req := func(id, method string) []byte {
		return []byte(`{"jsonrpc":"2.0","id":` + id + `,"method":"` + method + `","params":{"name":"x",` + meta + `}}`)
	}
	f.Add(req("1", "tools/call"), []byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":$ID,"progress":1}}
{"jsonrpc":"2.0","id":$ID,"result":{"content":[]}}`), []byte(`{}`))
	f.Add(req(`"a"`, "tools/call"), []byte(`{"jsonrpc":"2.0","id":"e1","method":"elicitation/create","params":{"message":"$TAG"}}
{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"error"}}
{"jsonrpc":"2.0","id":$ID,"result":{"content":[],"x":"$TAG"}}`), []byte(`{"r1":{"action":"accept"}}`))
	f.Add(req(`{"x":[1]}`, "tools/call"), []byte(`{"jsonrpc":"2.0","id":"e1","method":"roots/list"}
{"jsonrpc":"2.0","id":"e2","method":"sampling/createMessage","params":null}`), []byte(`{"r2":null}`))
	f.Add(req("null", "tools/list"), []byte("json\n{\"jsonrpc\":\"2.0\",\"id\":$ID,\"error\":{\"code\":-1,\"message\":\"no\"}}"), []byte(`5`))
	f.Add(req("2", "subscriptions/listen"), []byte(``), []byte(`[]`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"requestState":"mcpgate-00","inputResponses":{}}}`), []byte(``), []byte(`{}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","ID":2,"params":{"_meta":{"progressToken":1}}}`), []byte(`{"jsonrpc":"2.0","id":$ID,"result":{}}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, body, script, inputs []byte) {
		var p jsonrpc.Parser
		msgs, batch, perr := p.Parse(body)
		if perr != nil || batch || msgs[0].Kind != jsonrpc.KindRequest {
			return // the gateway answers these itself
		}
		id := append([]byte(nil), msgs[0].ID...)
		token := append([]byte(nil), msgs[0].ProgressToken...)
		if len(token) == 0 {
			token = nil
		}
		tr := &scriptTransport{script: bytes.Split(script, []byte("\n")), tag: "mine-7f3a"}
		pool := NewSessionPool(tr, BridgeConfig{}).(*sessionPool)
		defer pool.Close()
		// Another owner's requests run on sessions of their own transport.
		mine, theirs := WithPrincipal(context.Background(), "alice"), WithPrincipal(context.Background(), "bob")
		ctx, cancel := context.WithTimeout(mine, 5*time.Second)
		defer cancel()
		r, err := pool.Do(ctx, nil, body)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("%q over %q: no answer in time", body, script)
			}
			return
		}
		out, _ := readReply(r, 2*len(tr.script)+4)
		checkPoolAnswer(t, body, out, id, token, "")
		if len(out) == 0 {
			return
		}
		state, ok := jsonrpc.Lookup(out[len(out)-1], "result", "requestState")
		if !ok || !json.Valid(inputs) {
			return
		}
		retry := []byte(`{"jsonrpc":"2.0","id":"retry","method":"tools/call","params":{"requestState":` + string(state) +
			`,"inputResponses":` + string(inputs) + `}}`)
		r, err = pool.Do(theirs, nil, retry)
		if err != nil || r.JSON == nil || !bytes.Contains(r.JSON, []byte("unknown or expired requestState")) {
			t.Fatalf("another owner continued the call: %v %q", err, r.JSON)
		}
		rctx, rcancel := context.WithTimeout(mine, 5*time.Second)
		defer rcancel()
		start := time.Now()
		r, err = pool.Do(rctx, nil, retry)
		if time.Since(start) > 2*time.Second {
			t.Fatalf("%q over %q: the retry took %v (%v)", body, script, time.Since(start), err)
		}
		if err != nil {
			return
		}
		out, _ = readReply(r, 2*len(tr.script)+4)
		checkPoolAnswer(t, retry, out, []byte(`"retry"`), nil, "")
		// The server got the answers as they were given, under its ids.
		var answers map[string]json.RawMessage
		_ = json.Unmarshal(inputs, &answers)
		tr.mu.Lock()
		defer tr.mu.Unlock()
		for _, sent := range tr.sent {
			if got, ok := jsonrpc.Lookup(sent, "result"); ok && !json.Valid(got) {
				t.Fatalf("invalid answer upstream: %q", sent)
			}
		}
	})
}

// FuzzStatelessBridge: a session-era client's message of any bytes over a
// stateless upstream answering with any messages, input_required results
// included, and the client answering every server request it is sent. The
// bridge never panics; the upstream sees the client's id (as the gateway's
// parser reads it) on every forward and retry; server requests carry a
// method and a minted id; a call ends with its response under the client's
// id, without the revision's result members; all in a bounded number of
// messages.
func FuzzStatelessBridge(f *testing.F) {
	ask := `{"jsonrpc":"2.0","id":$ID,"result":{"resultType":"input_required","inputRequests":{"a":{"method":"elicitation/create","params":{"message":"?"}},"b":{"method":"roots/list"}},"requestState":"st1"}}`
	done := `{"jsonrpc":"2.0","id":$ID,"result":{"resultType":"complete","content":[],"ttlMs":0}}`
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`), []byte(ask+"\n--\n"+done), []byte(`{"action":"accept"}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":"q","method":"tools/call","params":{"name":"x","_meta":{"progressToken":"q"}}}`),
		[]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"q"}}`+"\n"+ask), []byte(`{}`))
	f.Add([]byte(`[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}]`),
		[]byte(done), []byte(`null`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}`),
		[]byte(`{"jsonrpc":"2.0","id":$ID,"result":{"resultType":"input_required","inputRequests":{"a":{"params":{}}}}}`), []byte(`{}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","ID":2}`), []byte(done), []byte(`{}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":"<a&b>","method":"tools/call","params":{}}`), []byte(done), []byte(`{}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":7,"method":"resources/subscribe","params":{"uri":"a"}}`), []byte(done), []byte(`{}`))
	f.Fuzz(func(t *testing.T, body, script, answer []byte) {
		var p jsonrpc.Parser
		msgs, _, perr := p.Parse(body)
		if perr != nil {
			return // the gateway answers these itself
		}
		ids := map[string]bool{}
		for _, m := range msgs {
			if m.Kind == jsonrpc.KindRequest {
				ids[string(m.ID)] = true
			}
		}
		rounds := bytes.Split(script, []byte("\n--\n"))
		allValid := true
		for _, r := range rounds {
			for _, line := range bytes.Split(r, []byte("\n")) {
				allValid = allValid && json.Valid(bytes.ReplaceAll(line, []byte("$ID"), []byte("1")))
			}
		}
		up := &scriptedStateless{}
		var calls int
		up.handler = func(method string, req []byte) *Reply {
			if method == "server/discover" {
				return &Reply{JSON: []byte(`{"jsonrpc":"2.0","id":0,"result":{"resultType":"complete","capabilities":{}}}`)}
			}
			id, _ := jsonrpc.Lookup(req, "id")
			r := rounds[min(calls, len(rounds)-1)]
			calls++
			var lines []string
			for _, line := range bytes.Split(r, []byte("\n")) {
				lines = append(lines, string(bytes.ReplaceAll(line, []byte("$ID"), id)))
			}
			return &Reply{Stream: &sliceStream{msgs: lines}}
		}
		tr := NewStatelessBridge(up, BridgeConfig{InputTimeout: 100 * time.Millisecond, MaxRounds: 3})
		s, _, err := tr.Connect(context.Background(), []byte(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}`))
		if err != nil || s == nil {
			t.Fatalf("initialize: %v", err)
		}
		defer s.Close(context.Background())
		r, err := s.Send(context.Background(), body)
		if err != nil {
			return
		}
		var out [][]byte
		limit := (3+1)*(len(bytes.Split(script, []byte("\n")))+8) + 8*len(msgs)
		var end error
		switch {
		case r.JSON != nil:
			out = append(out, r.JSON)
		case r.Stream != nil:
			for {
				m, err := r.Stream.Next()
				if err != nil {
					end = err
					break
				}
				if len(out) > limit {
					t.Fatalf("%q over %q: more than %d messages", body, script, limit)
				}
				m = append([]byte(nil), m...)
				out = append(out, m)
				e, _ := decodeEnvelope(m)
				if mid, _ := jsonrpc.Lookup(m, "id"); bytes.HasPrefix(mid, []byte(`"mcpgate-input-`)) {
					if e.Method == "" {
						t.Fatalf("%q over %q: a server request without a method: %q", body, script, m)
					}
					a := []byte(`{"jsonrpc":"2.0","id":` + string(mid) + `,"result":` + string(answer) + `}`)
					if !json.Valid(answer) {
						a = errorResponse(mid, -1, "no")
					}
					if _, err := s.Send(context.Background(), a); err != nil {
						t.Fatalf("answer: %v", err)
					}
				}
			}
			_ = r.Stream.Close()
		}
		for _, m := range out {
			if allValid && json.Valid(answer) && !json.Valid(m) {
				t.Fatalf("%q over %q: invalid JSON %q", body, script, m)
			}
		}
		// Every forward and retry upstream carries a client's request id.
		for _, x := range up.exchanges() {
			id, _ := jsonrpc.Lookup([]byte(x.body), "id")
			if string(id) == "0" || string(id) == `"mcpgate-listen"` {
				continue
			}
			found := false
			for want := range ids {
				found = found || sameJSON(id, []byte(want))
			}
			if !found {
				t.Fatalf("%q: forwarded upstream under id %s: %q", body, id, x.body)
			}
		}
		// An upstream that answers every round under the id it was sent
		// ends the call.
		answers := true
		for _, r := range rounds {
			answered := false
			for _, line := range bytes.Split(r, []byte("\n")) {
				line = bytes.ReplaceAll(line, []byte("$ID"), []byte("987654321"))
				e, ok := decodeEnvelope(line)
				id, _ := jsonrpc.Lookup(line, "id")
				answered = answered || ok && e.isResponse() && string(id) == "987654321"
			}
			answers = answers && answered
		}
		if r.Stream != nil && len(msgs) == 1 && answers && allValid && !errors.Is(end, io.EOF) {
			t.Fatalf("%q over %q: the call failed: %v", body, script, end)
		}
		// A single request's stream ends with its response.
		if r.Stream != nil && len(msgs) == 1 && errors.Is(end, io.EOF) && allValid {
			last := out[len(out)-1]
			if got, _ := jsonrpc.Lookup(last, "id"); !sameJSON(got, msgs[0].ID) {
				t.Fatalf("%q over %q: the stream ended on %q", body, script, last)
			}
			for _, k := range []string{"resultType", "ttlMs", "cacheScope"} {
				if _, ok := jsonrpc.Lookup(last, "result", k); ok {
					t.Fatalf("%q over %q: the response kept %s: %q", body, script, k, last)
				}
			}
		}
	})
}
