package gateway

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// lifeCtx is a session's context: never past a deadline, no values, done
// when the session ends (cancel).
//
// It is not a context.WithCancel because of what a session with a stream
// would then hold for its whole life: a cancelCtx puts its children in a
// map, made by the first child (a GET stream's dial and its timeouts are
// children) and never given back when they end, since a Go map does not
// shrink: about 250 bytes per session, a sixth of what an idle stream costs
// the gateway's heap. The context package derives children of a context
// with an AfterFunc method through that method (the afterFuncer hook of
// context.propagateCancel, documented with context.AfterFunc), so lifeCtx
// keeps them in a slice that is dropped when the last one goes.
type lifeCtx struct {
	ended atomic.Bool
	mu    sync.Mutex
	done  chan struct{} // made by the first Done
	after []*lifeFunc   // registered by AfterFunc and not stopped; nil when none
}

// lifeFunc is one AfterFunc registration (a pointer: its identity).
type lifeFunc struct{ f func() }

// closedDone is what Done returns once the context ended before anyone asked.
var closedDone = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (c *lifeCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

func (c *lifeCtx) Value(any) any { return nil }

func (c *lifeCtx) Err() error {
	if c.ended.Load() {
		return context.Canceled
	}
	return nil
}

func (c *lifeCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		if c.ended.Load() {
			c.done = closedDone
		} else {
			c.done = make(chan struct{})
		}
	}
	return c.done
}

// AfterFunc runs f once the context ends (at once, on a goroutine of its
// own, if it has). stop unregisters f; it reports whether it did so
// before f was run. The context package calls it for every child context
// and every context.AfterFunc on a session's context; f is then the
// package's own cancellation of the child, which never blocks, so cancel
// runs the registered functions itself.
func (c *lifeCtx) AfterFunc(f func()) (stop func() bool) {
	c.mu.Lock()
	if c.ended.Load() {
		c.mu.Unlock()
		// The caller may hold a lock f takes (propagateCancel holds the
		// child's): never run f here.
		go f()
		return func() bool { return false }
	}
	e := &lifeFunc{f: f}
	c.after = append(c.after, e)
	c.mu.Unlock()
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		i := slices.Index(c.after, e)
		if i < 0 {
			return false
		}
		c.after = slices.Delete(c.after, i, i+1)
		if len(c.after) == 0 {
			c.after = nil // nothing held while no child lives
		}
		return true
	}
}

// cancel ends the context: Done closes, Err reports context.Canceled and
// the registered functions run, in the order they were registered.
// Idempotent.
func (c *lifeCtx) cancel() {
	c.mu.Lock()
	if c.ended.Load() {
		c.mu.Unlock()
		return
	}
	c.ended.Store(true)
	if c.done != nil {
		close(c.done)
	}
	after := c.after
	c.after = nil
	c.mu.Unlock()
	for _, e := range after {
		e.f()
	}
}
