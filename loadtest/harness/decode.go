package harness

import (
	"fmt"
	"strconv"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// Keys of the measurement fields the mock upstream puts in params._meta.
const (
	metaSeq  = "seq"
	metaSent = "sent"
)

// Message is what the harness reads from one JSON-RPC message. Its slices alias the
// decoded input and are valid only during the EventFunc call that receives it.
type Message struct {
	Kind   jsonrpc.Kind
	ID     []byte // raw JSON id (responses and requests)
	Method []byte
	Raw    []byte
	Seq    uint64 // params._meta.seq, 0 when absent
	Sent   int64  // params._meta.sent (unix ns), 0 when absent
}

// IsResponse reports whether m answers a request (a result or an error).
func (m *Message) IsResponse() bool {
	return m.Kind == jsonrpc.KindResponse || m.Kind == jsonrpc.KindError
}

// decoder reads messages. It is not safe for concurrent use.
type decoder struct {
	p jsonrpc.Parser
}

// decode reads one (non-batch) message. The returned slices alias data.
func (d *decoder) decode(data []byte) (Message, error) {
	msgs, batch, perr := d.p.Parse(data)
	if perr != nil {
		return Message{}, fmt.Errorf("%w: %s", ErrProtocol, perr.Message)
	}
	if batch || len(msgs) != 1 {
		return Message{}, fmt.Errorf("%w: unexpected batch", ErrProtocol)
	}
	m := msgs[0]
	out := Message{Kind: m.Kind, ID: m.ID, Method: m.Method, Raw: m.Raw}
	if v, ok := jsonrpc.Lookup(m.Raw, "params", "_meta", metaSeq); ok {
		out.Seq, _ = strconv.ParseUint(string(v), 10, 64)
	}
	if v, ok := jsonrpc.Lookup(m.Raw, "params", "_meta", metaSent); ok {
		out.Sent, _ = strconv.ParseInt(string(v), 10, 64)
	}
	return out, nil
}

// lookupUint reads a non-negative integer at path in data.
func lookupUint(data []byte, path ...string) (uint64, bool) {
	v, ok := jsonrpc.Lookup(data, path...)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	return n, err == nil
}

// lookupInt reads an integer at path in data.
func lookupInt(data []byte, path ...string) (int64, bool) {
	v, ok := jsonrpc.Lookup(data, path...)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}
