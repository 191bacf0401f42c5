package gateway

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
)

// scriptedStream is an upstream stream with NextWithin: it yields msgs, then
// io.EOF; after wait messages it has nothing "yet" (NextWithin times out).
type scriptedStream struct {
	msgs   []string
	wait   int // NextWithin answers "nothing yet" once this many were taken
	taken  int
	closed bool
}

func (s *scriptedStream) Next() ([]byte, error) {
	if s.taken < len(s.msgs) {
		s.taken++
		return []byte(s.msgs[s.taken-1]), nil
	}
	return nil, io.EOF
}

func (s *scriptedStream) NextWithin(time.Duration) ([]byte, bool, error) {
	if s.taken >= s.wait {
		return nil, false, nil
	}
	m, err := s.Next()
	return m, true, err
}

func (s *scriptedStream) Close() error { s.closed = true; return nil }

func TestEarlyAnswer(t *testing.T) {
	srv := newTestServer(t, Config{})
	c := &call{clientID: []byte(`"client-7"`), upID: 3}
	var p jsonrpc.Parser

	// The response first: JSON under the client's id; the stream is done.
	st := &scriptedStream{msgs: []string{`{"jsonrpc":"2.0","id":3,"result":{"ok":true}}`}, wait: 9}
	answer, rest := srv.earlyAnswer(&p, st, c)
	assert.Equal(t, `{"jsonrpc":"2.0","id":"client-7","result":{"ok":true}}`, string(answer))
	assert.Nil(t, rest)
	assert.True(t, st.closed)

	// A notification first: no early answer; the stream to pump yields it
	// first, then the rest.
	prog := `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}`
	st = &scriptedStream{msgs: []string{prog, `{"jsonrpc":"2.0","id":3,"result":{}}`}, wait: 9}
	answer, rest = srv.earlyAnswer(&p, st, c)
	require.Nil(t, answer)
	m, err := rest.Next()
	require.NoError(t, err)
	assert.Equal(t, prog, string(m))
	m, err = rest.Next()
	require.NoError(t, err)
	assert.Contains(t, string(m), `"id":3`)
	assert.False(t, st.closed)

	// Another call's response (not this one's) is not taken as the answer.
	st = &scriptedStream{msgs: []string{`{"jsonrpc":"2.0","id":4,"result":{}}`}, wait: 9}
	answer, rest = srv.earlyAnswer(&p, st, c)
	assert.Nil(t, answer)
	m, _ = rest.Next()
	assert.Contains(t, string(m), `"id":4`)

	// Nothing within the window: the stream as it was.
	st = &scriptedStream{msgs: []string{`{"jsonrpc":"2.0","id":3,"result":{}}`}, wait: 0}
	answer, rest = srv.earlyAnswer(&p, st, c)
	assert.Nil(t, answer)
	assert.Same(t, st, rest)

	// A stream without NextWithin (Streamable HTTP answers) is left alone.
	answer, rest = srv.earlyAnswer(&p, plainStream{st}, c)
	assert.Nil(t, answer)
	assert.Equal(t, plainStream{st}, rest)
}

// plainStream hides NextWithin.
type plainStream struct{ s *scriptedStream }

func (p plainStream) Next() ([]byte, error) { return p.s.Next() }
func (p plainStream) Close() error          { return p.s.Close() }
