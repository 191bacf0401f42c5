package upstream

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

type countingTransport struct{ closed atomic.Int32 }

func (t *countingTransport) Close() error { return nil }
func (t *countingTransport) Connect(context.Context, []byte) (Session, []byte, error) {
	return &countingSession{t: t}, []byte(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{}}}`), nil
}

type countingSession struct{ t *countingTransport }

func (s *countingSession) ID() string      { return "" }
func (s *countingSession) Version() string { return "2025-11-25" }
func (s *countingSession) Listen(context.Context) (Stream, error) {
	return nil, ErrNotSupported
}
func (s *countingSession) Close(context.Context) error { s.t.closed.Add(1); return nil }
func (s *countingSession) Send(_ context.Context, body []byte) (*Reply, error) {
	e, _ := decodeEnvelope(body)
	if !e.isRequest() {
		return &Reply{Accepted: true}, nil
	}
	return &Reply{JSON: []byte(`{"jsonrpc":"2.0","id":` + string(e.ID) + `,"result":{"tools":[]}}`)}, nil
}

// TestPoolFullDoesNotEvictForExistingEntry: with maxPoolEntries pooled
// sessions, a request for one of them needs no room; it must not close
// another principal's session (whose calls may be in flight).
func TestPoolFullDoesNotEvictForExistingEntry(t *testing.T) {
	tr := &countingTransport{}
	p := NewSessionPool(tr, BridgeConfig{}).(*sessionPool)
	defer p.Close()
	req := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`)
	do := func(principal int) {
		r, err := p.Do(WithPrincipal(context.Background(), fmt.Sprint(principal)), nil, req)
		require.NoError(t, err)
		require.NotNil(t, r.JSON)
	}
	for i := 0; i < maxPoolEntries; i++ {
		do(i)
	}
	require.Zero(t, tr.closed.Load())
	do(maxPoolEntries / 2) // an existing entry
	require.Zero(t, tr.closed.Load(), "a pooled session was closed although no entry was added")
}
