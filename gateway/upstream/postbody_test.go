package upstream

import (
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// gatedReader blocks each Read until release is closed; Close records that
// it was called without unblocking a Read (so a test can watch a Read
// outlive the body's close).
type gatedReader struct {
	release chan struct{}
	entered chan struct{}
	once    sync.Once
	mu      sync.Mutex
	closed  bool
}

func (g *gatedReader) Read(p []byte) (int, error) {
	g.once.Do(func() { close(g.entered) })
	<-g.release
	return copy(p, "data: x\n\n"), nil
}

func (g *gatedReader) Close() error {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	return nil
}

func TestPostBodyReleasesAfterCloseAndReads(t *testing.T) {
	t.Run("closed with no read running", func(t *testing.T) {
		resp := fasthttp.AcquireResponse()
		resp.SetBodyStream(strings.NewReader("data: {}\n\n"), -1)
		b := &postBody{resp: resp, refs: 1}
		buf := make([]byte, 64)
		n, err := b.Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "data: {}\n\n", string(buf[:n]))
		b.close()
		assert.Nil(t, b.resp, "released at close")
		n, err = b.Read(buf)
		assert.Equal(t, 0, n)
		assert.ErrorIs(t, err, io.EOF, "a read after close touches no response")
		b.close() // idempotent
	})
	t.Run("closed while a read runs", func(t *testing.T) {
		g := &gatedReader{release: make(chan struct{}), entered: make(chan struct{})}
		resp := fasthttp.AcquireResponse()
		resp.SetBodyStream(g, -1)
		b := &postBody{resp: resp, refs: 1}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = b.Read(make([]byte, 64))
		}()
		<-g.entered
		b.close()
		g.mu.Lock()
		assert.True(t, g.closed, "close closed the body stream")
		g.mu.Unlock()
		b.mu.Lock()
		held := b.resp != nil
		b.mu.Unlock()
		assert.True(t, held, "the response is kept while a read runs")
		close(g.release)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("read did not return")
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		assert.Nil(t, b.resp, "released when the last read returned")
	})
	t.Run("not streamed: never released", func(t *testing.T) {
		resp := fasthttp.AcquireResponse()
		resp.SetBodyString("data: {}\n\n")
		b := &postBody{resp: resp, refs: 1}
		r := bodyReader(b)
		b.close()
		got, err := io.ReadAll(r)
		require.NoError(t, err)
		assert.Equal(t, "data: {}\n\n", string(got), "the buffer read by bodyReader stays the response's")
		assert.NotNil(t, b.resp)
	})
}
