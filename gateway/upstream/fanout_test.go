package upstream

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"
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
