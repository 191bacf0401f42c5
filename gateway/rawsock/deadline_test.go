//go:build linux

package rawsock

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lazyPair is pair with Deadlines on a.
func lazyPair(t *testing.T) (*Deadlines, *net.TCPConn, func(p []byte) (int, error), net.Conn) {
	t.Helper()
	a, raw, b := pair(t)
	d := new(Deadlines)
	d.Init(a, raw)
	return d, a, func(p []byte) (int, error) { return d.Read(raw, p) }, b
}

// appliedNow reports the deadlines d has set on its connection.
func (d *Deadlines) appliedNow() (r, w int64) {
	return d.applied[readSide].Load(), d.applied[writeSide].Load()
}

// TestDeadlinesOnlyForWaits: a read that finds its bytes and a write that
// fits the socket's buffer leave the socket without a deadline; a read
// that waits bounds its wait with the one set, and fails at it.
func TestDeadlinesOnlyForWaits(t *testing.T) {
	d, a, read, b := lazyPair(t)
	raw, err := a.SyscallConn()
	require.NoError(t, err)
	require.NoError(t, d.SetRead(time.Now().Add(time.Hour)))
	require.NoError(t, d.SetWrite(time.Now().Add(time.Hour)))

	_, err = b.Write([]byte("ready"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var buf [1]byte
		n, wait := 0, true
		_ = raw.Control(func(fd uintptr) { n, wait = Peek(fd, buf[:]) })
		return !wait && n == 1
	}, 5*time.Second, time.Millisecond)
	buf := make([]byte, 16)
	n, err := read(buf)
	require.NoError(t, err)
	assert.Equal(t, "ready", string(buf[:n]))
	_, err = d.Write(raw, []byte("answer"))
	require.NoError(t, err)
	r, w := d.appliedNow()
	assert.Zero(t, r, "a read that did not wait set no deadline")
	assert.Zero(t, w, "a write that did not wait set no deadline")

	start := time.Now()
	require.NoError(t, d.SetRead(start.Add(50*time.Millisecond)))
	_, err = read(buf)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "the wait ends at the deadline")
	assert.GreaterOrEqual(t, time.Since(start), 40*time.Millisecond)
	r, _ = d.appliedNow()
	assert.NotZero(t, r, "the wait set it")
}

// TestStaleDeadlineRetried: a deadline left on the socket by an earlier
// wait and expired since does not fail a read or write asked for under
// another deadline (or none); an expired one asked for does.
func TestStaleDeadlineRetried(t *testing.T) {
	d, a, read, b := lazyPair(t)
	raw, err := a.SyscallConn()
	require.NoError(t, err)
	buf := make([]byte, 16)
	require.NoError(t, d.SetRead(time.Now().Add(10*time.Millisecond)))
	_, err = read(buf)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)

	require.NoError(t, d.SetRead(time.Time{}))
	go func() {
		time.Sleep(30 * time.Millisecond)
		_, _ = b.Write([]byte("late"))
	}()
	n, err := read(buf)
	require.NoError(t, err, "the expired deadline was not the one asked for")
	assert.Equal(t, "late", string(buf[:n]))

	require.NoError(t, d.SetRead(time.Now().Add(-time.Second)))
	_, err = read(buf)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "a deadline asked for that passed fails the wait")

	// The write side: a write deadline that expired on the socket.
	require.NoError(t, d.ApplyRead(time.Time{}))
	require.NoError(t, a.SetWriteBuffer(4096))
	require.NoError(t, d.SetWrite(time.Now().Add(20*time.Millisecond)))
	_, err = d.Write(raw, make([]byte, 16<<20)) // nobody reads: it waits and fails
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, d.SetWrite(time.Time{}))
	go func() { _, _ = io.Copy(io.Discard, b) }()
	_, err = d.Write(raw, make([]byte, 1<<20))
	assert.NoError(t, err, "Write under no deadline")
}

// TestDeadlineSetDuringWait: a deadline set while a read waits ends it.
func TestDeadlineSetDuringWait(t *testing.T) {
	d, _, read, _ := lazyPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := read(make([]byte, 8))
		done <- err
	}()
	require.Eventually(t, d.waiting[readSide].Load, 5*time.Second, time.Millisecond)
	require.NoError(t, d.SetRead(time.Now().Add(20*time.Millisecond)))
	select {
	case err := <-done:
		assert.True(t, errors.Is(err, os.ErrDeadlineExceeded), "got %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the deadline set during the wait did not end it")
	}
}

// TestDeadlinesNotLazyWithoutRaw: without a RawConn every deadline goes
// to the connection at once.
func TestDeadlinesNotLazyWithoutRaw(t *testing.T) {
	a, _, _ := pair(t)
	var d Deadlines
	d.Init(a, nil)
	require.NoError(t, d.SetRead(time.Now().Add(-time.Second)))
	_, err := a.Read(make([]byte, 8))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
}

// TestEarlierDeadlineStays: a deadline on the socket that ends a wait no
// later than the one asked for stays there (a wait that ends before it sets
// nothing); one that ends the wait early has it go on under the one asked
// for; a deadline asked for that ends sooner than the socket's is set.
func TestEarlierDeadlineStays(t *testing.T) {
	d, _, read, b := lazyPair(t)
	buf := make([]byte, 16)
	writeAfter := func(wait time.Duration, s string) {
		go func() {
			time.Sleep(wait)
			_, _ = b.Write([]byte(s))
		}()
	}
	require.NoError(t, d.SetRead(time.Now().Add(200*time.Millisecond)))
	writeAfter(10*time.Millisecond, "one")
	n, err := read(buf)
	require.NoError(t, err)
	require.Equal(t, "one", string(buf[:n]))
	first, _ := d.appliedNow()
	require.NotZero(t, first)

	require.NoError(t, d.SetRead(time.Now().Add(time.Hour)))
	writeAfter(10*time.Millisecond, "two")
	n, err = read(buf)
	require.NoError(t, err)
	require.Equal(t, "two", string(buf[:n]))
	r, _ := d.appliedNow()
	assert.Equal(t, first, r, "the earlier deadline stayed on the socket")

	start := time.Now()
	writeAfter(400*time.Millisecond, "three")
	n, err = read(buf)
	require.NoError(t, err, "the socket's deadline ended the wait early: it went on under the one asked for")
	assert.Equal(t, "three", string(buf[:n]))
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	r, _ = d.appliedNow()
	assert.Equal(t, d.want[readSide].Load(), r)

	start = time.Now()
	require.NoError(t, d.SetRead(start.Add(30*time.Millisecond)))
	_, err = read(buf)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "a sooner deadline than the socket's is set")
	assert.Less(t, time.Since(start), 10*time.Second)
}
