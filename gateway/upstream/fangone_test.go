package upstream

import (
	"context"
	"encoding/json"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// goneListenSession's standalone stream ends at once, and the upstream then
// no longer knows the session.
type goneListenSession struct{ listens atomic.Int32 }

func (s *goneListenSession) ID() string      { return "" }
func (s *goneListenSession) Version() string { return "2025-06-18" }
func (s *goneListenSession) Send(context.Context, []byte) (*Reply, error) {
	return nil, ErrSessionGone
}
func (s *goneListenSession) Close(context.Context) error { return nil }
func (s *goneListenSession) Listen(context.Context) (Stream, error) {
	if s.listens.Add(1) == 1 {
		return &sliceStream{}, nil // ends (EOF) at once
	}
	return nil, ErrSessionGone
}

// TestListenSubEndsWhenPooledSessionGone: a subscriptions/listen stream
// fed by a pooled session whose upstream session is gone must end, so the
// client subscribes again, rather than stay open and silent forever.
func TestListenSubEndsWhenPooledSessionGone(t *testing.T) {
	cfg := BridgeConfig{}
	cfg.setDefaults()
	s := &goneListenSession{}
	f := newFanout(s, cfg)
	defer f.stop()
	sub := &listenSub{id: json.RawMessage(`1`), tools: true, uris: map[string]bool{}, ch: make(chan []byte, 64), done: make(chan struct{}), fan: f}
	f.add(sub)
	ended := make(chan error, 1)
	var last []byte
	go func() {
		for {
			m, err := sub.Next()
			if err != nil {
				ended <- err
				return
			}
			last = m
		}
	}()
	select {
	case err := <-ended:
		assert.ErrorIs(t, err, io.EOF)
		assert.JSONEq(t, `{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete"}}`, string(last), "ended gracefully: the listen's response")
	case <-time.After(2 * time.Second):
		sub.end()
		<-ended
		t.Fatal("the listen stream stays open after its pooled session is gone")
	}
}
