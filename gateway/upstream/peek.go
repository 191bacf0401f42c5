package upstream

import "github.com/mcpgate/mcpgate/gateway/rawsock"

// peekPending copies up to len(buf) pending bytes of the socket fd into buf
// without consuming them or waiting: their count (0 at EOF), wait true when
// nothing at all is pending, or -1 when the peek failed (always, where
// rawsock cannot look: nothing is ever pending to it then, so readers park
// inside their reads, as any reader does, and nothing is waited for).
func peekPending(fd uintptr, buf []byte) (n int, wait bool) { return rawsock.Peek(fd, buf) }

// peekWouldBlock reports whether a read on the socket fd would block:
// nothing, not even EOF or an error, is pending (a one-byte peekPending
// into buf).
func peekWouldBlock(fd uintptr, buf []byte) bool {
	_, wait := peekPending(fd, buf[:1])
	return wait
}

// peekInto copies up to len(buf) pending bytes of the socket fd into buf
// without consuming them or waiting: their count, or -1 when nothing is
// pending or the peek failed.
func peekInto(fd uintptr, buf []byte) int {
	n, wait := peekPending(fd, buf)
	if wait {
		return -1
	}
	return n
}
