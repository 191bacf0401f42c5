package upstream

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// The era bridges (PROTOCOL.md section 3, rule 11) let each hop speak its
// own era: NewStatelessBridge serves session-era clients over an upstream
// of the stateless revision; NewSessionPool serves stateless clients over
// a session-era upstream. Both work on JSON-RPC messages with
// encoding/json: they are on the path only where the two eras differ.

// BridgeConfig configures the era bridges.
type BridgeConfig struct {
	// Timeout bounds each upstream exchange until its answer starts;
	// 0 = DefaultTimeout.
	Timeout time.Duration
	// Logger receives the bridges' logs; nil = slog.Default().
	Logger *slog.Logger
	// Versions are the session-era protocol versions the gateway serves,
	// oldest first; the latest is offered when a client asks for another.
	Versions []string
	// MaxRounds bounds the input rounds (MRTR) of one request;
	// 0 = DefaultMaxRounds.
	MaxRounds int
	// InputTimeout bounds how long a call waits for the client's answers
	// to the server's requests of one input round (sampling, elicitation,
	// roots) in both bridges: the stateless bridge ends the call with an
	// error, the session pool forgets its parked call and cancels it
	// upstream. Without a bound, a client that went away during an
	// elicitation would hold the call, and with it its session, forever.
	// People answer elicitations, so it is minutes; 0 = DefaultInputTimeout.
	InputTimeout time.Duration
	// AdvertiseStateless makes the session pool's server/discover list the
	// stateless revision first, so clients use it over a session-era
	// upstream (they then have no resumption); otherwise it lists only the
	// session-era versions, and a client able to fall back initializes a
	// resumable session instead.
	AdvertiseStateless bool
}

// DefaultMaxRounds bounds the multi round-trip rounds of one request.
const DefaultMaxRounds = 8

// DefaultInputTimeout is how long a call waits for the client's answers to
// one input round unless BridgeConfig.InputTimeout says otherwise.
const DefaultInputTimeout = 5 * time.Minute

func (c *BridgeConfig) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if len(c.Versions) == 0 {
		c.Versions = []string{"2025-03-26", "2025-06-18", "2025-11-25"}
	}
	if c.MaxRounds <= 0 {
		c.MaxRounds = DefaultMaxRounds
	}
	if c.InputTimeout <= 0 {
		c.InputTimeout = DefaultInputTimeout
	}
}

// The _meta keys of the stateless revision.
const (
	MetaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	MetaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	MetaClientInfo         = "io.modelcontextprotocol/clientInfo"
	MetaLogLevel           = "io.modelcontextprotocol/logLevel"
	MetaServerInfo         = "io.modelcontextprotocol/serverInfo"
	MetaSubscriptionID     = "io.modelcontextprotocol/subscriptionId"
)

// NameOf returns what the Mcp-Name header of a request of the stateless
// revision carries: params.name of tools/call and prompts/get, params.uri
// of resources/read; ok is false for other methods or when it is absent.
func NameOf(method string, params json.RawMessage) (string, bool) {
	var key string
	switch method {
	case "tools/call", "prompts/get":
		key = "name"
	case "resources/read":
		key = "uri"
	default:
		return "", false
	}
	raw, ok := jsonrpc.Lookup(params, key)
	if !ok {
		return "", false
	}
	s, ok := jsonrpc.Unquote(raw)
	return s, ok
}

// HeaderValue encodes a header value of the stateless revision: as it is
// when it is visible ASCII (spaces inside allowed) and does not look
// encoded itself, else as =?base64?<base64 of the UTF-8 bytes>?=.
func HeaderValue(v string) string {
	plain := utf8.ValidString(v) && len(v) > 0 && v[0] != ' ' && v[len(v)-1] != ' ' &&
		!(strings.HasPrefix(v, "=?base64?") && strings.HasSuffix(v, "?="))
	for i := 0; plain && i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e {
			plain = false
		}
	}
	if plain {
		return v
	}
	return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(v)) + "?="
}

// statelessHeaders are the headers of one request of the stateless
// revision.
func statelessHeaders(method string, params json.RawMessage) []Header {
	hdr := []Header{{"MCP-Protocol-Version", StatelessVersion}, {"Mcp-Method", method}}
	if name, ok := NameOf(method, params); ok {
		hdr = append(hdr, Header{"Mcp-Name", HeaderValue(name)})
	}
	return hdr
}

// envelope is a JSON-RPC message decoded enough to rewrite it.
type envelope struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   json.RawMessage `json:"error,omitempty"`
}

func (e *envelope) isRequest() bool      { return e.Method != "" && len(e.ID) > 0 }
func (e *envelope) isNotification() bool { return e.Method != "" && len(e.ID) == 0 }
func (e *envelope) isResponse() bool     { return e.Method == "" && (e.Result != nil || e.Error != nil) }

// decodeEnvelope reads a message's members by their exact names, as
// jsonrpc.Parser and Lookup do: decoded into the struct, encoding/json
// would take "ID" or "Method" for them too, and a message could name one
// request to the gateway and another to the bridge (answered, forwarded or
// matched under an id the gateway never saw).
func decodeEnvelope(b []byte) (envelope, bool) {
	var e envelope
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return e, false
	}
	e.ID, e.Params, e.Result, e.Error = m["id"], m["params"], m["result"], m["error"]
	if raw, ok := m["jsonrpc"]; ok && json.Unmarshal(raw, &e.JSONRPC) != nil {
		return e, false
	}
	if raw, ok := m["method"]; ok && json.Unmarshal(raw, &e.Method) != nil {
		return e, false
	}
	return e, true
}

func (e *envelope) encode() []byte {
	e.JSONRPC = "2.0"
	b, _ := json.Marshal(e)
	return b
}

// withMeta returns params (an object, or empty) with the keys of meta set
// in its _meta object, keeping the _meta keys already there (a progress
// token). Other params pass unchanged.
func withMeta(params json.RawMessage, meta map[string]json.RawMessage) json.RawMessage {
	obj := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(params)) > 0 && string(params) != "null" {
		if err := json.Unmarshal(params, &obj); err != nil {
			return params // not an object: the upstream judges it
		}
	}
	m := map[string]json.RawMessage{}
	if raw, ok := obj["_meta"]; ok {
		_ = json.Unmarshal(raw, &m)
	}
	for k, v := range meta {
		if v != nil {
			m[k] = v
		}
	}
	b, _ := json.Marshal(m)
	obj["_meta"] = b
	out, _ := json.Marshal(obj)
	return out
}

// setParam returns params with key set to v (v nil removes it).
func setParam(params json.RawMessage, key string, v json.RawMessage) json.RawMessage {
	obj := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(params)) > 0 && string(params) != "null" {
		if err := json.Unmarshal(params, &obj); err != nil {
			return params
		}
	}
	if v == nil {
		delete(obj, key)
	} else {
		obj[key] = v
	}
	out, _ := json.Marshal(obj)
	return out
}

func quoteJSON(s string) json.RawMessage { return jsonrpc.AppendString(nil, s) }

func errorResponse(id json.RawMessage, code int, msg string) []byte {
	return jsonrpc.AppendError(nil, id, code, msg, nil)
}

// resultType returns the resultType of a result object ("" if absent).
func resultType(result json.RawMessage) string {
	raw, ok := jsonrpc.Lookup(result, "resultType")
	if !ok {
		return ""
	}
	s, _ := jsonrpc.Unquote(raw)
	return s
}

// sameID reports whether two raw JSON ids are one id: a string however it
// is escaped (encoding/json, which forwards the bridges' messages, sends
// "<" as "\u003c", and an upstream may re-encode what it got), anything
// else byte for byte.
func sameID(a, b json.RawMessage) bool {
	if string(a) == string(b) {
		return true
	}
	sa, okA := jsonrpc.Unquote(a)
	sb, okB := jsonrpc.Unquote(b)
	return okA && okB && sa == sb
}

// counterID is a server-to-client request id the bridges mint.
func counterID(prefix string, n uint64) json.RawMessage {
	return quoteJSON(prefix + strconv.FormatUint(n, 10))
}
