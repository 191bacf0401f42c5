package harness

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// getReader reads one session's standalone GET stream: it tracks push sequence numbers,
// records delivery latencies, and reconnects with Last-Event-ID after a cut (its own, in
// the resume scenario) or after the server closed the stream.
type getReader struct {
	r      *runner
	sess   *Session
	lane   *Lane
	metric string // latency metric
	kind   string // event accounting kind
	cuts   bool   // cut the connection at random intervals
	stalls bool   // stop reading from the end of the warm-up for cfg.Stall (or to the end)
	rng    *rand.Rand

	opened  chan error    // the first GET's outcome
	done    chan struct{} // closed when the reader exits
	highest atomic.Uint64 // highest sequence number seen

	// trackMu guards tracker (the reader goroutine observes, the runner accounts).
	trackMu sync.Mutex
	tracker SeqTracker
}

// startReader opens the session's GET stream and starts reading it. It returns once the
// stream is open (or failed to open).
func (r *runner) startReader(sess *Session, rd *getReader) error {
	rd.r, rd.sess = r, sess
	rd.lane = r.rec.Lane(sess.Index)
	rd.opened = make(chan error, 1)
	rd.done = make(chan struct{})
	if rd.metric == "" {
		rd.metric, rd.kind = MetricEvent, EventsPush
	}
	go rd.run()
	err := <-rd.opened
	if err == nil {
		r.streamsOpened.Add(1)
	}
	return err
}

// open issues a GET (a resume when lastID is set), counting it.
func (rd *getReader) open(lastID []byte) (*EventStream, error) {
	if len(lastID) > 0 {
		return rd.r.resume(rd.lane, rd.sess, lastID)
	}
	rd.lane.Add("ops", 1)
	rd.lane.Add("req/GET", 1)
	es, err := rd.r.c.Get(rd.sess, nil)
	if err != nil {
		rd.lane.Error(ErrorKind(err))
	}
	return es, err
}

func (rd *getReader) nextCut(now time.Time) time.Time {
	if !rd.cuts {
		return time.Time{}
	}
	mean := float64(rd.r.cfg.CutEvery)
	return now.Add(time.Duration(rd.rng.ExpFloat64() * mean))
}

func (rd *getReader) run() {
	defer close(rd.done)
	es, err := rd.open(nil)
	rd.opened <- err
	if err != nil {
		return
	}
	var d decoder
	cutAt := rd.nextCut(time.Now())
	var lastID []byte
	for {
		if rd.stalls {
			rd.stall()
		}
		ev, err := es.Next()
		if err != nil {
			lastID = append(lastID[:0], es.LastID()...)
			es.Close()
			if rd.r.stopping.Load() {
				return
			}
			// The server ended the stream: reconnect as a real client would.
			rd.lane.Add("server_closes", 1)
			if es, err = rd.reconnect(lastID); err != nil {
				return
			}
			continue
		}
		if len(ev.Data) == 0 {
			continue
		}
		recv := time.Now()
		m, err := d.decode(ev.Data)
		if err != nil {
			rd.lane.Error("protocol")
			continue
		}
		if m.Seq == 0 {
			continue // not one of the mock's measured notifications
		}
		rd.trackMu.Lock()
		rd.tracker.Observe(m.Seq)
		rd.highest.Store(rd.tracker.Highest())
		rd.trackMu.Unlock()
		if m.Sent > 0 {
			sent := time.Unix(0, m.Sent)
			rd.lane.Latency(rd.metric, recv.Sub(sent), rd.r.measured(sent))
		}
		if !cutAt.IsZero() && recv.After(cutAt) && !rd.r.stopping.Load() && len(es.LastID()) > 0 {
			lastID = append(lastID[:0], es.LastID()...)
			es.Close() // drops the connection mid-stream
			rd.lane.Add("cuts", 1)
			if es, err = rd.reconnect(lastID); err != nil {
				return
			}
			cutAt = rd.nextCut(time.Now())
		}
	}
}

// reconnect resumes after lastID, or opens a fresh GET when there is none.
func (rd *getReader) reconnect(lastID []byte) (*EventStream, error) {
	if len(lastID) > 0 {
		return rd.open(lastID)
	}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if rd.r.stopping.Load() {
			return nil, errStopping
		}
		var es *EventStream
		if es, err = rd.open(nil); err == nil {
			return es, nil
		}
		time.Sleep(time.Duration(50*(attempt+1)) * time.Millisecond)
	}
	return nil, err
}

var errStopping = errors.New("harness: stopping")

// waitDrained waits until the reader has seen offered, made no progress for a while, or
// the deadline passed.
func (rd *getReader) waitDrained(offered uint64, deadline time.Time) {
	const quiet = time.Second
	last, lastChange := rd.highest.Load(), time.Now()
	for {
		h := rd.highest.Load()
		now := time.Now()
		switch {
		case h >= offered, now.After(deadline):
			return
		case h != last:
			last, lastChange = h, now
		case now.Sub(lastChange) > quiet:
			return
		}
		select {
		case <-rd.done:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// account adds the reader's event counts, for offered pushed events, to the run.
func (rd *getReader) account(offered uint64) {
	rd.trackMu.Lock()
	defer rd.trackMu.Unlock()
	rd.r.addEvents(rd.kind, offered, &rd.tracker)
}

// stall sleeps through the stall window if it is now.
func (rd *getReader) stall() {
	w := rd.r.win()
	to := w.end
	if st := rd.r.cfg.Stall; st > 0 && w.measureFrom.Add(st).Before(to) {
		to = w.measureFrom.Add(st)
	}
	if now := time.Now(); now.Before(w.measureFrom) || !now.Before(to) || rd.r.stopping.Load() {
		return
	}
	rd.lane.Add("stalls", 1)
	time.Sleep(time.Until(to))
}
