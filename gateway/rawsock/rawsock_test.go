//go:build linux

package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pair is a connected loopback TCP pair: a (read and written with rawsock)
// and b (a plain net.Conn).
func pair(t *testing.T) (a *net.TCPConn, raw syscall.RawConn, b net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	b = <-accepted
	require.NotNil(t, b)
	a = c.(*net.TCPConn)
	raw, err = a.SyscallConn()
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = a.Close()
		_ = b.Close()
	})
	return a, raw, b
}

// TestReadWrite: bytes go both ways; a Read waits for input that comes
// later; an empty buffer reads and writes nothing; the peer's close reads
// as io.EOF.
func TestReadWrite(t *testing.T) {
	_, raw, b := pair(t)

	n, err := Write(raw, []byte("hello"))
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	got := make([]byte, 5)
	_, err = io.ReadFull(b, got)
	require.NoError(t, err)
	assert.Equal(t, "hello", string(got))

	go func() {
		time.Sleep(20 * time.Millisecond)
		_, _ = b.Write([]byte("world"))
	}()
	buf := make([]byte, 64)
	n, err = Read(raw, buf)
	require.NoError(t, err)
	assert.Equal(t, "world", string(buf[:n]), "a Read waits in the poller for input")

	n, err = Read(raw, nil)
	assert.NoError(t, err)
	assert.Zero(t, n)
	n, err = Write(raw, nil)
	assert.NoError(t, err)
	assert.Zero(t, n)

	require.NoError(t, b.Close())
	n, err = Read(raw, buf)
	assert.Zero(t, n)
	assert.ErrorIs(t, err, io.EOF)
}

// pattern is n bytes that do not repeat every few bytes.
func pattern(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i * 7)
	}
	return p
}

// TestWriteWaitsForRoom: a write larger than the socket buffers goes out
// whole, in order, waiting in the poller while the peer is slow to read.
func TestWriteWaitsForRoom(t *testing.T) {
	a, raw, b := pair(t)
	require.NoError(t, a.SetWriteBuffer(16<<10))
	want := pattern(4 << 20)
	got := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		p := make([]byte, 4096)
		for buf.Len() < len(want) {
			n, err := b.Read(p)
			buf.Write(p[:n])
			if err != nil {
				break
			}
			if buf.Len() < 64<<10 {
				time.Sleep(time.Millisecond) // slow at first: the writer waits for room
			}
		}
		got <- buf.Bytes()
	}()
	n, err := Write(raw, want)
	require.NoError(t, err)
	assert.Equal(t, len(want), n)
	assert.True(t, bytes.Equal(want, <-got), "every byte arrives, in order")
}

// TestWriteNowNeverWaits: WriteNow takes what the send buffer holds and
// returns at once when it is full (0 bytes, no error); what it took
// arrives whole and in order, and a closed connection is an error.
func TestWriteNowNeverWaits(t *testing.T) {
	a, raw, b := pair(t)
	require.NoError(t, a.SetWriteBuffer(16<<10))
	want := pattern(4 << 20)
	n, err := WriteNow(raw, want)
	require.NoError(t, err)
	require.Positive(t, n)
	require.Less(t, n, len(want), "a 16 KiB send buffer cannot take 4 MiB")
	more, err := WriteNow(raw, want[n:])
	require.NoError(t, err)
	assert.Zero(t, more, "the buffer is still full: nothing more, and no wait")

	got := make([]byte, n)
	_, err = io.ReadFull(b, got)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(want[:n], got), "what it took arrives, in order")

	require.NoError(t, a.Close())
	_, err = WriteNow(raw, want)
	assert.Error(t, err, "a closed connection")
}

// TestDeadlinesAndClose: the connection's deadlines end a wait with
// os.ErrDeadlineExceeded, and a Close ends a waiting Read with
// net.ErrClosed, as for net.Conn.
func TestDeadlinesAndClose(t *testing.T) {
	a, raw, _ := pair(t)
	require.NoError(t, a.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, err := Read(raw, make([]byte, 8))
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, a.SetReadDeadline(time.Time{}))

	require.NoError(t, a.SetWriteBuffer(4096))
	// Nobody reads: the buffers fill and the write waits for the deadline.
	// On a loaded machine the deadline may pass before the write's first
	// system call (nothing goes out then): a longer one is tried.
	var n int
	for d := 50 * time.Millisecond; ; d *= 4 {
		require.NoError(t, a.SetWriteDeadline(time.Now().Add(d)))
		n, err = Write(raw, make([]byte, 16<<20))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
		if n > 0 || d > 2*time.Second {
			break
		}
	}
	assert.Greater(t, n, 0, "what went out before the deadline is counted")
	assert.Less(t, n, 16<<20)

	done := make(chan error, 1)
	go func() {
		_, err := Read(raw, make([]byte, 8))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, a.Close())
	select {
	case err := <-done:
		assert.True(t, errors.Is(err, net.ErrClosed), "got %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the waiting Read")
	}
}

// TestPeek: nothing pending reports wait; pending bytes are copied and
// stay to be read; the peer's close is 0 bytes without wait.
func TestPeek(t *testing.T) {
	_, raw, b := pair(t)
	peek := onSocket(t, raw, Peek)
	buf := make([]byte, 8)
	n, wait := peek(buf)
	assert.True(t, wait)
	assert.Zero(t, n)

	_, err := b.Write([]byte("abc"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, wait := peek(buf); return !wait }, 5*time.Second, time.Millisecond)
	n, wait = peek(buf)
	assert.False(t, wait)
	assert.Equal(t, "abc", string(buf[:n]))
	got := make([]byte, 8)
	n, err = Read(raw, got)
	require.NoError(t, err)
	assert.Equal(t, "abc", string(got[:n]), "peeked bytes are still there to read")
	closedIsEOF(t, b, peek)
}

// TestTake: nothing pending reports wait; pending bytes are read (up to the
// buffer, the rest left for the next read); the peer's close is 0 bytes
// without wait.
func TestTake(t *testing.T) {
	_, raw, b := pair(t)
	take := onSocket(t, raw, Take)
	buf := make([]byte, 2)
	_, wait := take(buf)
	assert.True(t, wait)

	var n int
	_, err := b.Write([]byte("abc"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		n, wait = take(buf)
		return !wait
	}, 5*time.Second, time.Millisecond)
	assert.Equal(t, "ab", string(buf[:n]))
	n, wait = take(buf)
	assert.False(t, wait)
	assert.Equal(t, "c", string(buf[:n]), "what did not fit is read next")
	_, wait = take(buf)
	assert.True(t, wait, "taken bytes are gone")
	closedIsEOF(t, b, take)
}

// onSocket returns recv (Peek or Take) on raw's socket.
func onSocket(t *testing.T, raw syscall.RawConn, recv func(uintptr, []byte) (int, bool)) func([]byte) (int, bool) {
	return func(buf []byte) (n int, wait bool) {
		require.NoError(t, raw.Control(func(fd uintptr) { n, wait = recv(fd, buf) }))
		return n, wait
	}
}

// closedIsEOF closes the peer b and checks that recv then reports the end
// of the input: 0 bytes, without wait.
func closedIsEOF(t *testing.T, b net.Conn, recv func([]byte) (int, bool)) {
	t.Helper()
	require.NoError(t, b.Close())
	buf := make([]byte, 8)
	require.Eventually(t, func() bool { _, wait := recv(buf); return !wait }, 5*time.Second, time.Millisecond)
	n, wait := recv(buf)
	assert.False(t, wait)
	assert.Zero(t, n, "EOF")
}
