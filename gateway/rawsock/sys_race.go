//go:build linux && race

package rawsock

import "syscall"

// With the race detector, sysRead and sysWrite go through syscall.Read and
// syscall.Write: the same non-blocking calls, plus the detector's record of
// the bytes read into p and of the order a write and a later read make
// (the standard library's annotations, which a raw call would skip, so
// tests relying on that order through a socket would see false races).
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	return max(n, 0), errno(err)
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	return max(n, 0), errno(err)
}

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return err.(syscall.Errno)
}
