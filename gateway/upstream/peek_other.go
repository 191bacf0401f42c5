//go:build !linux

package upstream

// peekWouldBlock cannot tell on this platform: the reader then parks inside
// the body read, as any reader does.
func peekWouldBlock(uintptr, []byte) bool { return false }

// peekInto cannot look on this platform.
func peekInto(uintptr, []byte) int { return -1 }

// peekPending cannot look on this platform: nothing is waited for.
func peekPending(uintptr, []byte) (int, bool) { return -1, false }
