package upstream

import (
	"syscall"
	"unsafe"
)

// peekWouldBlock reports whether a read on the socket fd would block: a
// one-byte MSG_PEEK|MSG_DONTWAIT receive that leaves the data in place and
// fails with EAGAIN only when nothing (not even EOF or an error) is pending.
func peekWouldBlock(fd uintptr, buf []byte) bool {
	_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return errno == syscall.EAGAIN
}

// peekInto copies up to len(buf) pending bytes of the socket fd into buf
// without consuming them or waiting: their count, or -1 when nothing is
// pending or the peek failed.
func peekInto(fd uintptr, buf []byte) int {
	n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)),
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return -1
	}
	return int(n)
}

// peekPending is peekInto for a wait: wait is true when nothing is pending
// yet (EAGAIN); n is -1 on any other failure, 0 at EOF.
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
