package upstream

import (
	"sync"
	"time"
)

// idleWatch ends the waits of GET streams with an idle period (SetIdle)
// whose input stopped. A reader about to wait in WaitReadable stores when
// the wait began (getConn.waitSince); a goroutine of the transport looks at
// the watched streams every quarter of the shortest idle period and ends a
// wait that has lasted a stream's idle period with a read deadline in the
// past. A flowing stream's reader so arms no timer of its own: the read
// deadline each reader used to move on every idle/2 of input moved a
// runtime timer each time (~1 % of the gateway's CPU on 1,000 streams at 10
// events a second each, with the runtime's timer upkeep ~0.3 % more).
//
// A stream is watched from its reader's first wait until it parks in the
// transport's poller or closes: parked streams, which may be many, cost
// the watcher nothing.
type idleWatch struct {
	mu      sync.Mutex
	streams map[*getConn]time.Duration // watched streams and their idle periods
	tick    time.Duration              // the shortest idle period / 4
	stop    chan struct{}              // closed by close
	done    chan struct{}              // closed when run returns
}

func newIdleWatch() *idleWatch {
	w := &idleWatch{streams: make(map[*getConn]time.Duration), tick: time.Hour,
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// watch adds g, whose reader alone calls it, unless g was closed.
func (w *idleWatch) watch(g *getConn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if g.dead.Load() {
		return
	}
	w.streams[g] = g.idle
	w.tick = min(w.tick, max(g.idle/4, time.Millisecond))
}

// forget removes g (it parks or closes).
func (w *idleWatch) forget(g *getConn) {
	w.mu.Lock()
	delete(w.streams, g)
	w.mu.Unlock()
}

func (w *idleWatch) run() {
	defer close(w.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		w.mu.Lock()
		tick := w.tick
		w.mu.Unlock()
		t.Reset(min(tick, time.Second)) // a stream watched meanwhile waits at most a second for its tick
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.check(monoNow())
	}
}

// check ends every wait that has lasted its stream's idle period.
func (w *idleWatch) check(now int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for g, idle := range w.streams {
		if since := g.waitSince.Load(); since > 0 && time.Duration(now-since) >= idle {
			g.endWait(since)
		}
	}
}

// close stops the watcher; waits it has not ended are the streams' own.
func (w *idleWatch) close() {
	close(w.stop)
	<-w.done
}
