package upstream

import (
	"io"
	"log/slog"
	"time"
)

// stderrLineMax is the longest stderr line logged; longer ones are cut.
const stderrLineMax = 4 << 10

// rateWindow limits log lines to limit per one-second window.
type rateWindow struct {
	limit      int
	start      time.Time
	n          int
	suppressed int
}

// admit reports whether a line arriving at now may be logged. When it
// opens a new window after one that suppressed lines, it also returns how
// many were suppressed, so the caller can log that first.
func (w *rateWindow) admit(now time.Time) (ok bool, suppressedBefore int) {
	if now.Sub(w.start) >= time.Second {
		suppressedBefore = w.suppressed
		w.start, w.n, w.suppressed = now, 0, 0
	}
	if w.n < w.limit {
		w.n++
		return true, suppressedBefore
	}
	w.suppressed++
	return false, suppressedBefore
}

// logStderr logs what r (a child's stderr) carries, line by line, with
// attrs (the session's short id and pid), at most perSecond lines a second;
// beyond that lines are counted and reported as one "suppressed" line when
// the next window opens or the stream ends. perSecond < 0 discards
// everything. It returns when r fails (EOF, closed, deadline).
func logStderr(r io.Reader, log *slog.Logger, stats *counters, perSecond int, attrs ...any) {
	attrs = attrs[:len(attrs):len(attrs)] // appends below copy
	lr := newLineReader(r, stderrLineMax, true)
	w := rateWindow{limit: max(perSecond, 0)}
	report := func(n int) {
		if n > 0 {
			log.Warn("upstream stderr lines suppressed (rate limit)", append(attrs, "suppressed", n, "limit_per_second", perSecond)...)
		}
	}
	for {
		line, cut, err := lr.next()
		if err != nil {
			report(w.suppressed)
			return
		}
		if perSecond < 0 {
			continue
		}
		ok, before := w.admit(time.Now())
		report(before)
		if !ok {
			stats.stderrSuppressed.Add(1)
			continue
		}
		stats.stderrLines.Add(1)
		text := string(line)
		if cut {
			text += " [cut]"
		}
		log.Info("upstream stderr", append(attrs, "line", text)...)
	}
}
