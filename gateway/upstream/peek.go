package upstream

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
