package gateway

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// A client session keeps its id when its upstream side is replaced: re-
// initialized after a restart or by the cluster node that took the session
// over (reinitSession). The new upstream numbers its server-to-client
// requests from the start again, so a client's late answer to a request of
// the upstream session that is gone would reach the new one as the answer
// to another request under the same id. A replaced upstream side therefore
// gets a tag of its own: the ids of its server-to-client requests (and the
// requestId of its notifications/cancelled) reach the client as the string
// tag + the upstream's raw id, and the client's answers go back under the
// upstream's id; an answer without this incarnation's tag is dropped
// (PROTOCOL.md section 3, rule 3). An upstream side that was never replaced
// has no tag: its messages pass unchanged, at no cost.

// newIncarnationTag returns the prefix of a new incarnation's ids.
func newIncarnationTag() string {
	return "mcpgate-" + strconv.FormatUint(rand.Uint64(), 36) + ":"
}

// incarnationTag is the tag of the session's upstream side, "" if it was
// never replaced.
func (s *session) incarnationTag() string {
	switch up := s.up.(type) {
	case *reinitSession:
		return up.tagged()
	case *forwardSession:
		if l := up.local.Load(); l != nil {
			return l.tagged()
		}
	}
	return ""
}

// tagServerRequests returns msg, an upstream message or batch, with the
// ids of its requests and the requestId of its notifications/cancelled
// tagged; msg itself if there are none (or tag is "").
func tagServerRequests(msg []byte, tag string) []byte {
	if tag == "" {
		return msg
	}
	var p jsonrpc.Parser
	msgs, _, perr := p.Parse(msg)
	if perr != nil {
		return msg
	}
	var out []byte
	mark := 0 // msg up to here is in out
	for i := range msgs {
		m := &msgs[i]
		var id []byte
		switch {
		case m.Kind == jsonrpc.KindRequest:
			id = m.ID
		case m.Kind == jsonrpc.KindNotification && string(m.Method) == "notifications/cancelled":
			id, _ = jsonrpc.Lookup(m.Raw, "params", "requestId")
		}
		if id == nil {
			continue
		}
		off := cap(msg) - cap(id) // id aliases msg
		out = append(out, msg[mark:off]...)
		out = jsonrpc.AppendString(out, tag+string(id))
		mark = off + len(id)
	}
	if out == nil {
		return msg
	}
	return append(out, msg[mark:]...)
}

// untagAnswers returns body, a client message or batch, with the ids of
// its responses put back to the upstream's (tagged with tag) and those
// without tag left out: they answer an earlier incarnation's requests. It
// returns body itself when nothing changes, nil when nothing is left.
func untagAnswers(body []byte, tag string) []byte {
	var p jsonrpc.Parser
	msgs, batch, perr := p.Parse(body)
	if perr != nil {
		return body
	}
	answers := false
	for i := range msgs {
		if k := msgs[i].Kind; (k == jsonrpc.KindResponse || k == jsonrpc.KindError) && string(msgs[i].ID) != "null" {
			answers = true
		}
	}
	if !answers {
		return body
	}
	out := make([]byte, 0, len(body))
	if batch {
		out = append(out, '[')
	}
	kept := 0
	for i := range msgs {
		m := &msgs[i]
		raw := m.Raw
		var up []byte
		if (m.Kind == jsonrpc.KindResponse || m.Kind == jsonrpc.KindError) && string(m.ID) != "null" {
			id, ok := untaggedID(m.ID, tag)
			if !ok {
				continue // an answer to a request of an upstream session that is gone
			}
			up = id
		}
		if kept > 0 {
			out = append(out, ',')
		}
		if up != nil {
			out = jsonrpc.AppendReplaced(out, raw, m.ID, up)
		} else {
			out = append(out, raw...)
		}
		kept++
	}
	if kept == 0 {
		return nil
	}
	if batch {
		out = append(out, ']')
	}
	return out
}

// untaggedID returns the upstream's raw id of id, a tagged id of the
// incarnation with tag.
func untaggedID(id []byte, tag string) ([]byte, bool) {
	if tag == "" {
		return nil, false
	}
	s, ok := jsonrpc.Unquote(id)
	if !ok {
		return nil, false
	}
	raw, ok := strings.CutPrefix(s, tag)
	if !ok || raw == "" || !json.Valid([]byte(raw)) || (raw[0] != '"' && raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return nil, false
	}
	return []byte(raw), true
}
