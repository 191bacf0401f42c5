package upstream

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

type evictTransport struct{ closed atomic.Int32 }

func (t *evictTransport) Close() error { return nil }
func (t *evictTransport) Connect(context.Context, []byte) (Session, []byte, error) {
	return &evictSession{t: t}, []byte(`{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{}}}`), nil
}

type evictSession struct{ t *evictTransport }

func (s *evictSession) ID() string      { return "" }
func (s *evictSession) Version() string { return "2025-11-25" }
func (s *evictSession) Listen(context.Context) (Stream, error) {
	return nil, ErrNotSupported
}
func (s *evictSession) Close(context.Context) error { s.t.closed.Add(1); return nil }
func (s *evictSession) Send(_ context.Context, body []byte) (*Reply, error) {
	e, _ := decodeEnvelope(body)
	if !e.isRequest() {
		return &Reply{Accepted: true}, nil
	}
	return &Reply{JSON: []byte(`{"jsonrpc":"2.0","id":` + string(e.ID) + `,"result":{"tools":[]}}`)}, nil
}

// TestPoolEvictionRace: concurrent stateless requests of more principals
// than maxPoolEntries (run with -race): the LRU eviction must not read an
// entry's last use while a request updates it.
func TestPoolEvictionRace(t *testing.T) {
	tr := &evictTransport{}
	p := NewSessionPool(tr, BridgeConfig{}).(*sessionPool)
	defer p.Close()
	req := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				_, _ = p.Do(WithPrincipal(context.Background(), fmt.Sprint((i*8+w)%(maxPoolEntries+8))), nil, req)
			}
		}()
	}
	wg.Wait()
}
