package gateway

import (
	"sync/atomic"
	"time"
)

// sparseLog is for a warning that a flood of events would repeat (requests
// refused for their address's failed authentications, upstream closes past
// the reaper's queue): one line per interval at most, giving the number of
// events since the last line. A line is never held back for later: the
// events of a quiet end of a flood are told by the next line, or by the
// metrics.
type sparseLog struct {
	every   time.Duration
	events  atomic.Uint64
	lastLog atomic.Int64  // coarse unix ns of the last line (0: none yet)
	told    atomic.Uint64 // events counted by the lines so far
	writing atomic.Bool   // a line is being decided
}

// event counts one event at now (coarse unix ns) and reports whether to
// log a line for it, and how many events the line stands for.
func (l *sparseLog) event(now int64) (since uint64, log bool) {
	n := l.events.Add(1)
	if last := l.lastLog.Load(); last != 0 && now-last < int64(l.every) {
		return 0, false
	}
	if !l.writing.CompareAndSwap(false, true) {
		return 0, false
	}
	defer l.writing.Store(false)
	if last := l.lastLog.Load(); last != 0 && now-last < int64(l.every) {
		return 0, false // another event's line came first
	}
	l.lastLog.Store(now)
	return n - l.told.Swap(n), true
}
