package rawsock

import (
	"errors"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Deadlines holds a connection's read and write deadlines until a Read or
// Write made through it is about to wait, and only then sets them on the
// connection, and only when the one there would end the wait later.
//
// fasthttp sets a deadline before nearly every read and write of a
// request's exchange: on the client's connection the idle wait's, the
// head's and the body's, on the upstream's the write's and the answer's.
// Each is a timer moved in the runtime (a lock and a heap update), 4 % of
// mcpgate's CPU in session churn. A deadline only bounds a wait, and most
// of those reads find their bytes already there and most writes fit the
// socket's buffer: they never wait. So a deadline set here is kept, and the
// read or write that finds nothing pending (EAGAIN) sets it before it
// parks in the poller. A deadline set while one waits applies at once.
//
// A deadline already on the socket that ends the wait no later than the
// one asked for stays: a keep-alive connection's idle deadline moves on a
// little at every request, and the one set at its first still bounds the
// wait. Where it ends a wait (or fails a read or write because it expired
// in between), the failure is seen as stale (the deadline asked for
// differs), the one asked for is set and the read or write goes on under
// it; this happens once per deadline period at most.
//
// What differs from the connection's own deadlines: a read or write that
// does not wait succeeds even when a deadline set earlier has passed. Every
// wait is bounded, and what a peer sends is bounded by the size limits, so
// a peer cannot stretch an exchange beyond its deadline with input that is
// always already there by more than reading that input takes.
//
// Waits that do not go through Deadlines (a RawConn callback of the
// caller's own) set their deadline with ApplyRead, so that Deadlines knows
// what the connection holds.
type Deadlines struct {
	conn net.Conn
	lazy bool

	// Deadlines are Unix nanoseconds, 0 for none. want is what was asked
	// for, applied what the connection holds (written under mu, which
	// orders the setting of deadlines on it).
	want    [2]atomic.Int64
	applied [2]atomic.Int64
	// waiting: a Read (or Write) is about to wait or waits on this side:
	// a deadline set then goes on the connection at once.
	waiting [2]atomic.Bool
	mu      sync.Mutex
}

// The sides of a connection.
const (
	readSide  = 0
	writeSide = 1
)

// Init makes d hold conn's deadlines; lazily only where raw system calls
// are Supported and raw (conn's) is not nil: otherwise every deadline goes
// to conn at once.
func (d *Deadlines) Init(conn net.Conn, raw syscall.RawConn) {
	d.conn = conn
	d.lazy = Supported && raw != nil
}

// SetRead sets the read deadline: at the next read that waits.
func (d *Deadlines) SetRead(t time.Time) error { return d.set(readSide, t) }

// SetWrite sets the write deadline: at the next write that waits.
func (d *Deadlines) SetWrite(t time.Time) error { return d.set(writeSide, t) }

// Set sets both deadlines.
func (d *Deadlines) Set(t time.Time) error {
	return errors.Join(d.set(readSide, t), d.set(writeSide, t))
}

// ApplyRead sets the read deadline on the connection now, exactly: for a
// wait of the caller's own.
func (d *Deadlines) ApplyRead(t time.Time) error {
	if !d.lazy {
		return d.conn.SetReadDeadline(t)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.want[readSide].Store(nanos(t))
	return d.applyLocked(readSide)
}

func (d *Deadlines) set(side int, t time.Time) error {
	if !d.lazy {
		if side == readSide {
			return d.conn.SetReadDeadline(t)
		}
		return d.conn.SetWriteDeadline(t)
	}
	n := nanos(t)
	d.want[side].Store(n)
	if d.waiting[side].Load() && needed(d.applied[side].Load(), n) {
		return d.applyIfNeeded(side)
	}
	return nil
}

// needed reports whether a wait under deadline want must set it, the
// connection holding applied: it holds none, or one that ends later.
func needed(applied, want int64) bool {
	if applied == 0 {
		return want != 0
	}
	return want != 0 && applied > want
}

// nanos is t as a deadline here: 0 for none, at least 1 (a deadline in
// the past).
func nanos(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case !t.After(firstNano):
		return 1
	case t.After(lastNano):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var firstNano, lastNano = time.Unix(0, 1), time.Unix(0, math.MaxInt64)

// applyIfNeeded sets side's deadline on the connection if a wait needs it.
func (d *Deadlines) applyIfNeeded(side int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !needed(d.applied[side].Load(), d.want[side].Load()) {
		return nil
	}
	return d.applyLocked(side)
}

// applyLocked sets the deadline asked for on side on the connection,
// unless it holds that one.
func (d *Deadlines) applyLocked(side int) error {
	n := d.want[side].Load()
	if n == d.applied[side].Load() {
		return nil
	}
	var t time.Time
	if n != 0 {
		t = time.Unix(0, n)
	}
	var err error
	if side == readSide {
		err = d.conn.SetReadDeadline(t)
	} else {
		err = d.conn.SetWriteDeadline(t)
	}
	if err == nil {
		d.applied[side].Store(n)
	}
	return err
}

// arm is called by a read or write that is about to wait: side's deadline
// goes on the connection if the wait needs it, and so do deadlines set
// while it waits.
func (d *Deadlines) arm(side int) {
	d.waiting[side].Store(true)
	if needed(d.applied[side].Load(), d.want[side].Load()) {
		_ = d.applyIfNeeded(side) // a closed connection: the wait reports it
	}
}

// disarm ends what arm began.
func (d *Deadlines) disarm(side int) { d.waiting[side].Store(false) }

// stale reports whether err, a failure of a read or write through d, is the
// expiry of a deadline other than the one asked for; it then sets the one
// asked for, under which the read or write is tried again.
func (d *Deadlines) stale(side int, err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.want[side].Load() == d.applied[side].Load() {
		return false
	}
	return d.applyLocked(side) == nil
}
