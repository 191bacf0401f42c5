package upstream

import "time"

// NextWithin is Next bounded by d: ok is false when no message (and no
// end) arrived within d, and the stream is then as it was. The gateway
// uses it to answer a call whose response comes at once with JSON instead
// of opening an SSE stream. Like Next, only the stream's one reader may
// call it.
func (s *msgStream) NextWithin(d time.Duration) (msg []byte, ok bool, err error) {
	var timer *time.Timer
	for {
		if msg, err, done := s.tryNext(); done {
			if timer != nil {
				timer.Stop()
			}
			return msg, true, err
		}
		if timer == nil {
			timer = time.NewTimer(d)
		}
		select {
		case <-s.ready:
		case <-timer.C:
			return nil, false, nil
		}
	}
}
