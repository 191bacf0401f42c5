package upstream

import (
	"syscall"
	"unsafe"
)

// peekPending copies up to len(buf) pending bytes of the socket fd into buf
// with a MSG_PEEK|MSG_DONTWAIT receive, which leaves them in place and never
// waits: their count (0 at EOF), wait true when nothing at all is pending
// (EAGAIN), or -1 when the peek failed.
func peekPending(fd uintptr, buf []byte) (n int, wait bool) {
	for {
		r, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			return int(r), false
		case syscall.EINTR:
		case syscall.EAGAIN:
			return 0, true
		default:
			return -1, false
		}
	}
}
