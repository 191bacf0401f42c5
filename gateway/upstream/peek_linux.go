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
