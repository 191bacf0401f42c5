package harness

import (
	"context"
	"errors"
	"sync"
	"time"
)

// runPost is the post scenario: open-loop tools/call echo at Rate across Sessions.
func (r *runner) runPost(ctx context.Context) error {
	var sessions []*Session
	if IsStateless(r.cfg.Version) {
		sessions = []*Session{nil}
	} else {
		sessions = r.openSessions(ctx, r.cfg.Sessions)
	}
	readers := r.startIdleReaders(sessions, r.cfg.Streams)
	r.schedule()
	stopMon := r.startMonitor(MetricCall)
	r.openLoop(ctx, r.cfg.Rate, r.cfg.Conns, func(lane *Lane, i uint64, intended time.Time) {
		sess := sessions[i%uint64(len(sessions))]
		if sess == nil && !IsStateless(r.cfg.Version) {
			lane.Error("no_session")
			return
		}
		if r.echo(lane, sess) == nil {
			lane.Latency(MetricCall, time.Since(intended), r.measured(intended))
		}
	})
	stopMon()
	r.teardown(sessions, readers, nil)
	return ctx.Err()
}

// startIdleReaders opens GET streams on the first n sessions (no pushes).
func (r *runner) startIdleReaders(sessions []*Session, n int) []*getReader {
	var readers []*getReader
	for _, sess := range sessions[:min(n, len(sessions))] {
		if sess == nil {
			continue
		}
		rd := &getReader{}
		if r.startReader(sess, rd) == nil {
			readers = append(readers, rd)
		}
	}
	return readers
}

// teardown stops pushes (when offered is non-nil, it is filled with each reader's last
// push sequence number), waits for in-flight events, ends the sessions and accounts
// the events of every reader.
func (r *runner) teardown(sessions []*Session, readers []*getReader, pushing map[*getReader]bool) {
	offered := make(map[*getReader]uint64, len(readers))
	if len(pushing) > 0 {
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, min(r.cfg.Conns, 32))
		for _, rd := range readers {
			if !pushing[rd] {
				continue
			}
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				last, err := r.setPush(rd.lane, rd.sess, 0)
				if err == nil {
					mu.Lock()
					offered[rd] = last
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		deadline := time.Now().Add(r.cfg.DrainTimeout)
		for _, rd := range readers {
			if last, ok := offered[rd]; ok {
				rd.waitDrained(last, deadline)
			}
		}
	}
	r.stopping.Store(true)
	r.closeSessions(sessions)
	timer := time.NewTimer(r.cfg.DrainTimeout)
	defer timer.Stop()
wait:
	for _, rd := range readers {
		select {
		case <-rd.done:
		case <-timer.C:
			break wait
		}
	}
	stuck := 0
	for _, rd := range readers {
		select {
		case <-rd.done:
		default:
			stuck++
		}
	}
	if stuck > 0 {
		// The target kept streams open after DELETE: cut them.
		r.note("%d GET streams did not end within %v of DELETE; the harness closed them", stuck, r.cfg.DrainTimeout)
		r.c.CloseAll()
		for _, rd := range readers {
			<-rd.done
		}
	}
	for _, rd := range readers {
		if last, ok := offered[rd]; ok {
			rd.account(last)
		} else if pushing[rd] {
			// The push rate could not be read back: count what arrived, offered unknown.
			rd.account(rd.highest.Load())
			rd.lane.Error("offered_unknown")
		}
	}
}

// runStream is the stream scenario (and, with slow, the slow one): every session holds
// a GET stream pushed at Rate/Sessions events per second.
func (r *runner) runStream(ctx context.Context, slow bool) error {
	sessions := r.openSessions(ctx, r.cfg.Sessions)
	perSession := r.cfg.Rate / float64(max(1, len(sessions)))
	var readers []*getReader
	nStalled := 0
	if slow {
		nStalled = max(1, int(float64(len(sessions))*r.cfg.SlowFraction+0.5))
		if nStalled >= len(sessions) {
			nStalled = len(sessions) - 1
		}
	}
	for i, sess := range sessions {
		if sess == nil {
			continue
		}
		rd := &getReader{}
		if i < nStalled {
			rd.metric, rd.kind, rd.stalls = MetricStalled, EventsPushStalled, true
			sess.SmallWindow = true
		}
		if r.startReader(sess, rd) == nil {
			readers = append(readers, rd)
		}
	}
	pushing := r.startPushes(readers, perSession)
	w := r.schedule()
	stopMon := r.startMonitor(MetricEvent)
	err := sleepUntil(ctx, w.end)
	stopMon()
	r.teardown(sessions, readers, pushing)
	return err
}

// runChurn is the churn scenario: open-loop session lifecycles (initialize,
// notifications/initialized, tools/call echo, DELETE) at Rate per second.
func (r *runner) runChurn(ctx context.Context) error {
	r.schedule()
	stopMon := r.startMonitor(MetricCycle)
	r.openLoop(ctx, r.cfg.Rate, r.cfg.Conns, func(lane *Lane, i uint64, intended time.Time) {
		sess, err := r.initialize(lane)
		if err != nil {
			return
		}
		callErr := r.echo(lane, sess)
		r.deleteSession(lane, sess)
		if callErr == nil {
			lane.Latency(MetricCycle, time.Since(intended), r.measured(intended))
		}
	})
	stopMon()
	return ctx.Err()
}

// runResume is the resume scenario: GET streams pushed at Rate/Sessions each, cut at
// random and resumed with Last-Event-ID, while every session also runs stream tool calls
// whose SSE answers are cut once at a random point and resumed the same way.
func (r *runner) runResume(ctx context.Context) error {
	sessions := r.openSessions(ctx, r.cfg.Sessions)
	perSession := r.cfg.Rate / float64(max(1, len(sessions)))
	var readers []*getReader
	for _, sess := range sessions {
		if sess == nil {
			continue
		}
		rd := &getReader{cuts: true, rng: r.rng(sess.Index)}
		if r.startReader(sess, rd) == nil {
			readers = append(readers, rd)
		}
	}
	pushing := r.startPushes(readers, perSession)
	w := r.schedule()
	stopMon := r.startMonitor(MetricEvent)
	var wg sync.WaitGroup
	for _, sess := range sessions {
		if sess == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := r.rng(1_000_000 + sess.Index)
			lane := r.rec.Lane(sess.Index)
			for ctx.Err() == nil && time.Now().Before(w.end) {
				cutAfter := uint64(1 + rng.IntN(max(1, r.cfg.StreamCount-1)))
				r.streamCall(lane, sess, cutAfter)
			}
		}()
	}
	wg.Wait()
	err := sleepUntil(ctx, w.end)
	stopMon()
	r.teardown(sessions, readers, pushing)
	return err
}

// streamCall runs one stream tool call, cutting its answer after cutAfter progress
// notifications (0: never) and resuming it with GET and Last-Event-ID.
func (r *runner) streamCall(lane *Lane, sess *Session, cutAfter uint64) {
	count := uint64(r.cfg.StreamCount)
	var t SeqTracker
	var seen uint64
	onEvent := func(m *Message) bool {
		if m.Seq == 0 {
			return true
		}
		recv := time.Now()
		t.Observe(m.Seq)
		seen++
		if m.Sent > 0 {
			sent := time.Unix(0, m.Sent)
			lane.Latency(MetricProgress, recv.Sub(sent), r.measured(sent))
		}
		return cutAfter == 0 || seen != cutAfter
	}
	start := time.Now()
	token := "lt-" + sess.ID + "-" + time.Now().Format("150405.000000000")
	_, err := r.call(lane, sess, &Request{
		Method: "tools/call",
		Name:   "stream",
		Stream: true,
		Params: map[string]any{
			"name":      "stream",
			"arguments": map[string]any{"count": count, "rate": r.cfg.StreamRate, "pad": r.cfg.Payload},
			"_meta":     map[string]any{"progressToken": token},
		},
	}, onEvent)
	if cut, ok := err.(*CutError); ok {
		lane.Add("cuts", 1)
		err = r.resumeCall(lane, sess, cut, onEvent)
		if errors.Is(err, errStopping) {
			return // cut short by the end of the run: neither latency nor events count
		}
	}
	if err == nil {
		lane.Latency(MetricStream, time.Since(start), r.measured(start))
	}
	r.addEvents(EventsProgress, count, &t)
}

// resumeCall resumes a cut stream tool answer and reads it to the response.
func (r *runner) resumeCall(lane *Lane, sess *Session, cut *CutError, onEvent EventFunc) error {
	if len(cut.LastID) == 0 {
		lane.Error("resume_no_event_id")
		return ErrCut
	}
	es, err := r.resume(lane, sess, cut.LastID)
	if err != nil {
		return err
	}
	if _, err := ReadAnswer(es, cut.ID, onEvent); err != nil {
		lane.Error("resume_" + ErrorKind(err))
		return err
	}
	return nil
}

// runSoak is the soak scenario: half of Rate as tools/call echo, half as pushed events
// over the GET streams (each cut every CutEvery on average and resumed with
// Last-Event-ID), session churn at Rate/100 per second and hostile requests at
// HostileRate, while the target's metrics endpoint is sampled.
func (r *runner) runSoak(ctx context.Context) error {
	sessions := r.openSessions(ctx, r.cfg.Sessions)
	nStreams := r.cfg.Streams
	if nStreams == 0 {
		nStreams = len(sessions)
	}
	perSession := r.cfg.Rate / 2 / float64(max(1, nStreams))
	var readers []*getReader
	for _, sess := range sessions[:min(nStreams, len(sessions))] {
		if sess == nil {
			continue
		}
		rd := &getReader{cuts: true, rng: r.rng(sess.Index)}
		if r.startReader(sess, rd) == nil {
			readers = append(readers, rd)
		}
	}
	pushing := r.startPushes(readers, perSession)
	r.schedule()
	stopMon := r.startMonitor(MetricCall)
	sampleStop := make(chan struct{})
	sampleDone := make(chan struct{})
	go r.sampleTarget(sampleStop, sampleDone)
	var wg sync.WaitGroup
	wg.Add(2)
	if hostileRate := r.cfg.HostileRate; hostileRate > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.openLoop(ctx, hostileRate, max(1, r.cfg.Conns/8), func(lane *Lane, i uint64, _ time.Time) {
				r.hostile(lane, i, sessions[i%uint64(len(sessions))])
			})
		}()
	}
	go func() {
		defer wg.Done()
		r.openLoop(ctx, r.cfg.Rate/2, r.cfg.Conns, func(lane *Lane, i uint64, intended time.Time) {
			sess := sessions[i%uint64(len(sessions))]
			if sess == nil {
				lane.Error("no_session")
				return
			}
			if r.echo(lane, sess) == nil {
				lane.Latency(MetricCall, time.Since(intended), r.measured(intended))
			}
		})
	}()
	go func() {
		defer wg.Done()
		r.openLoop(ctx, max(1, r.cfg.Rate/100), max(1, r.cfg.Conns/8), func(lane *Lane, i uint64, intended time.Time) {
			sess, err := r.initialize(lane)
			if err != nil {
				return
			}
			callErr := r.echo(lane, sess)
			r.deleteSession(lane, sess)
			if callErr == nil {
				lane.Latency(MetricCycle, time.Since(intended), r.measured(intended))
			}
		})
	}()
	wg.Wait()
	close(sampleStop)
	<-sampleDone
	stopMon()
	r.teardown(sessions, readers, pushing)
	return ctx.Err()
}

// startPushes has the mock push rate events/s on every reader's session,
// a few sessions at a time, once all the streams are open: pushing to the
// first sessions while later ones were still being set up slowed the setup
// down and front-loaded the run. It returns the readers whose push started.
func (r *runner) startPushes(readers []*getReader, rate float64) map[*getReader]bool {
	pushing := make(map[*getReader]bool, len(readers))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, rd := range readers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := r.setPush(rd.lane, rd.sess, rate); err == nil {
				mu.Lock()
				pushing[rd] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return pushing
}
