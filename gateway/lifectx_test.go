package gateway

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The session context behaves as a context.WithCancel for everything the
// gateway derives from it, and holds nothing for children that ended.
func TestLifeCtxChildren(t *testing.T) {
	c := new(lifeCtx)
	require.NoError(t, c.Err())
	_, has := c.Deadline()
	assert.False(t, has)

	// Children that end on their own leave nothing registered.
	for range 3 {
		child, cancel := context.WithTimeout(c, time.Hour)
		stop := context.AfterFunc(child, func() {})
		require.Len(t, c.after, 1) // the child; its AfterFunc is the child's
		stop()
		cancel()
	}
	assert.Nil(t, c.after, "ended children leave no registration behind")

	// Live children end with the context: a timeout, a plain cancel, a
	// grandchild, an AfterFunc.
	timeout, cancelTimeout := context.WithTimeout(c, time.Hour)
	defer cancelTimeout()
	plain, cancelPlain := context.WithCancel(c)
	defer cancelPlain()
	grand, cancelGrand := context.WithCancel(plain)
	defer cancelGrand()
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })
	done := c.Done()
	select {
	case <-done:
		t.Fatal("done before cancel")
	default:
	}

	c.cancel()
	c.cancel() // idempotent
	for _, ctx := range []context.Context{c, timeout, plain, grand} {
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a child did not end with the session")
		}
		assert.ErrorIs(t, ctx.Err(), context.Canceled)
		assert.ErrorIs(t, context.Cause(ctx), context.Canceled)
	}
	<-ran
	assert.Nil(t, c.after)

	// Derived after the end: done at once.
	late, cancelLate := context.WithTimeout(c, time.Hour)
	defer cancelLate()
	<-late.Done()
	ranLate := make(chan struct{})
	assert.False(t, context.AfterFunc(c, func() { close(ranLate) })())
	<-ranLate
}

// Done asked for the first time after the end is closed.
func TestLifeCtxDoneAfterCancel(t *testing.T) {
	c := new(lifeCtx)
	c.cancel()
	<-c.Done()
	assert.ErrorIs(t, c.Err(), context.Canceled)
}

// A dial under the session's context: interrupted by the session's end,
// and nothing left registered once it returned.
func TestLifeCtxDial(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c := new(lifeCtx)
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(c, "tcp", ln.Addr().String())
	require.NoError(t, err)
	conn.Close()
	assert.Nil(t, c.after, "a finished dial leaves nothing registered")

	c.cancel()
	_, err = d.DialContext(c, "tcp", ln.Addr().String())
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled), "%v", err)
}

// Children made and ended while the context ends, from many goroutines
// (run with -race): each child ends, with the context or by itself.
func TestLifeCtxConcurrent(t *testing.T) {
	for range 20 {
		c := new(lifeCtx)
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 50 {
					child, cancel := context.WithCancel(c)
					if c.Err() != nil {
						<-child.Done()
					}
					cancel()
				}
			}()
		}
		c.cancel()
		wg.Wait()
		assert.Nil(t, c.after)
	}
}
