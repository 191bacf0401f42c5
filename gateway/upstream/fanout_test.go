package upstream

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// blockingStream is an upstream standalone stream with nothing to say: Next
// blocks until Close.
type blockingStream struct {
	once sync.Once
	done chan struct{}
}

func (s *blockingStream) Next() ([]byte, error) { <-s.done; return nil, io.EOF }
func (s *blockingStream) Close() error          { s.once.Do(func() { close(s.done) }); return nil }

// slowListenSession's Listen returns only once release is closed (it
// ignores ctx, as the stdio and legacy sessions' Listen do).
type slowListenSession struct {
	entered, release chan struct{}
}

func (s *slowListenSession) ID() string      { return "" }
func (s *slowListenSession) Version() string { return "2025-06-18" }
func (s *slowListenSession) Send(context.Context, []byte) (*Reply, error) {
	return &Reply{Accepted: true}, nil
}
func (s *slowListenSession) Close(context.Context) error { return nil }
func (s *slowListenSession) Listen(context.Context) (Stream, error) {
	close(s.entered)
	<-s.release
	return &blockingStream{done: make(chan struct{})}, nil
}

// TestFanoutStopDuringListen: a fanout stopped while its reader is
// between Listen and recording the stream must still end (stop waits for
// the reader); otherwise retire, and with it the pool's Close or the
// request that evicts the entry, hangs forever.
func TestFanoutStopDuringListen(t *testing.T) {
	s := &slowListenSession{entered: make(chan struct{}), release: make(chan struct{})}
	cfg := BridgeConfig{}
	cfg.setDefaults()
	f := newFanout(s, cfg)
	<-s.entered
	stopped := make(chan struct{})
	go func() {
		f.stop()
		close(stopped)
	}()
	time.Sleep(50 * time.Millisecond) // stop has cancelled and found no stream
	close(s.release)
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		t.Fatal("fanout.stop hangs: its reader went on reading a stream opened as it was stopped")
	}
}

// listeningTransport's sessions offer tool list changes and hold a quiet
// standalone stream.
type listeningTransport struct{}

func (listeningTransport) Close() error { return nil }
func (listeningTransport) Connect(context.Context, []byte) (Session, []byte, error) {
	return listeningSession{}, []byte(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":true}}}}`), nil
}

type listeningSession struct{}

func (listeningSession) ID() string                  { return "" }
func (listeningSession) Version() string             { return "2025-11-25" }
func (listeningSession) Close(context.Context) error { return nil }
func (listeningSession) Send(context.Context, []byte) (*Reply, error) {
	return &Reply{Accepted: true}, nil
}
func (listeningSession) Listen(context.Context) (Stream, error) {
	return &blockingStream{done: make(chan struct{})}, nil
}

// TestPoolListenEndsComplete: a subscriptions/listen the gateway ends (its
// pooled session retired: evicted, or the pool closed) ends gracefully, with
// a resultType "complete" response to the listen request (PROTOCOL.md
// section 2, rule 45), not as an answer cut before its response.
func TestPoolListenEndsComplete(t *testing.T) {
	p := NewSessionPool(listeningTransport{}, BridgeConfig{}).(*sessionPool)
	r, err := p.Do(context.Background(), nil, []byte(`{"jsonrpc":"2.0","id":"L","method":"subscriptions/listen","params":{"notifications":{"toolsListChanged":true},`+
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`))
	require.NoError(t, err)
	require.NotNil(t, r.Stream)
	ack, err := r.Stream.Next()
	require.NoError(t, err)
	require.Contains(t, string(ack), "notifications/subscriptions/acknowledged")
	require.NoError(t, p.Close())
	end, err := r.Stream.Next()
	require.NoError(t, err, "a graceful end is a response, not an error")
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":"L","result":{"resultType":"complete"}}`, string(end))
	_, err = r.Stream.Next()
	assert.ErrorIs(t, err, io.EOF)
	require.NoError(t, r.Stream.Close())
}
