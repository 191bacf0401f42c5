//go:build !linux

package rawsock

import (
	"errors"
	"syscall"
)

// Supported reports whether Read and Write are available on this system:
// callers use the connection's own Read and Write when it is false.
const Supported = false

// Read is not available here.
func Read(syscall.RawConn, []byte) (int, error) { return 0, errors.ErrUnsupported }

// Write is not available here.
func Write(syscall.RawConn, []byte) (int, error) { return 0, errors.ErrUnsupported }

// Read is not available here.
func (*Deadlines) Read(syscall.RawConn, []byte) (int, error) { return 0, errors.ErrUnsupported }

// Write is not available here.
func (*Deadlines) Write(syscall.RawConn, []byte) (int, error) { return 0, errors.ErrUnsupported }

// Peek cannot look here: it reports a failed peek.
func Peek(uintptr, []byte) (int, bool) { return -1, false }

// Take cannot read here: it reports a failed read.
func Take(uintptr, []byte) (int, bool) { return -1, false }

// ReadNow cannot read here: it reports errors.ErrUnsupported.
func ReadNow(uintptr, []byte) (int, bool, error) { return 0, false, errors.ErrUnsupported }

// WriteNow is not available here.
func WriteNow(syscall.RawConn, []byte) (int, error) { return 0, errors.ErrUnsupported }
