//go:build !linux

package upstream

// peekPending cannot look on this platform: nothing is ever pending to it,
// so readers park inside their reads, as any reader does, and nothing is
// waited for.
func peekPending(uintptr, []byte) (int, bool) { return -1, false }
