package gateway

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestExpiryWheel, in a synctest bubble: an idle session ends within one
// check period (idle timeout / 32) after its deadline; one kept active by
// requests lives on; a busy one outlives its idle timeout but not its
// maximum age; a session ended otherwise is forgotten; and each idle
// session is looked at about once per idle timeout, not at every check.
func TestExpiryWheel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = 64 * time.Second
		s, mk := expiryServer(t, Config{SessionIdleTimeout: idle, SessionMaxAge: 10 * idle, SweepInterval: time.Second, Shards: 4})
		alive := func(sess *session) bool { _, ok := s.store.Get(sess.id); return ok }

		const many = 1000
		idleOnes := make([]*session, many)
		for i := range idleOnes {
			idleOnes[i] = mk()
		}
		active, busy, deleted := mk(), mk(), mk()
		busy.busy.Add(1)
		s.endSession(context.Background(), deleted, CloseClientDelete, upstreamNow)

		start := time.Now()
		for time.Since(start) < idle-2*time.Second {
			time.Sleep(time.Second)
			active.touch(s.clock.Now())
		}
		synctest.Wait()
		assert.True(t, alive(idleOnes[0]), "not before its deadline")
		for time.Since(start) < idle+idle/32+2*time.Second {
			time.Sleep(time.Second)
			active.touch(s.clock.Now())
		}
		synctest.Wait()
		for _, sess := range idleOnes {
			require.False(t, alive(sess), "an idle session ends within a check period of its deadline")
		}
		assert.True(t, alive(active), "activity moves the deadline")
		assert.True(t, alive(busy), "a busy session is not idle")
		var looks uint64
		for _, w := range s.wheels {
			looks += w.looks.Load()
		}
		assert.Less(t, looks, uint64(2*many), "idle sessions were looked at about once, not at every check (32 per idle timeout)")

		time.Sleep(10*idle - time.Since(start) + idle/32 + 2*time.Second)
		synctest.Wait()
		assert.False(t, alive(busy), "the maximum age ends even a busy session")
		assert.Equal(t, uint64(many+1), s.Metrics().SessionsClosed["idle"], "the idle ones, then the active one once left alone")
		assert.Equal(t, uint64(1), s.Metrics().SessionsClosed["max_age"], "the busy one")
	})
}

// TestExpiryLateness, in synctest bubbles: with a check period that the
// sweep interval does not divide (idle timeout 6 m: checks every 11.25 s,
// full passes every 11 s), sessions whose deadlines fall at every moment of
// two periods each end within one check period (and a sweep tick) of their
// deadline, whatever the phase of the sweeper's passes against the periods
// (the gateway started at 45 offsets a quarter second apart): a session
// looked at before its deadline in its own period is looked at again at
// the next pass, never a period later.
func TestExpiryLateness(t *testing.T) {
	const idle = 6 * time.Minute
	check := expiryCheckPeriod(idle, 0)
	require.Equal(t, 11250*time.Millisecond, check)
	var worst time.Duration
	for off := time.Duration(0); off < check; off += 250 * time.Millisecond {
		late := expiryLateness(t, idle, off)
		assert.LessOrEqual(t, late, check+time.Second, "the latest end after its deadline, the gateway started %v into a period", off)
		worst = max(worst, late)
	}
	t.Logf("latest end: %v after its deadline (check period %v)", worst, check)
}

// expiryLateness starts a gateway off into a bubble, opens a session every
// 250 ms for two check periods, and returns how long after its deadline
// the last of them to end ended.
func expiryLateness(t *testing.T, idle, off time.Duration) (worst time.Duration) {
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(off)
		s, mk := expiryServer(t, Config{SessionIdleTimeout: idle, SweepInterval: time.Second, Shards: 2})
		check := expiryCheckPeriod(idle, 0)
		type tracked struct {
			sess     *session
			deadline time.Time
		}
		var all []tracked
		for time.Duration(len(all))*250*time.Millisecond < 2*check {
			all = append(all, tracked{mk(), time.Now().Add(idle)})
			time.Sleep(250 * time.Millisecond)
		}
		time.Sleep(idle - 3*check)
		for left := len(all); left > 0; {
			time.Sleep(50 * time.Millisecond)
			synctest.Wait()
			left = 0
			for i := range all {
				if all[i].sess == nil {
					continue
				}
				if _, ok := s.store.Get(all[i].sess.id); ok {
					left++
					continue
				}
				late := time.Since(all[i].deadline)
				require.GreaterOrEqual(t, late, -time.Second, "ended before its idle timeout (less the coarse clock's tick)")
				worst = max(worst, late)
				all[i].sess = nil
			}
		}
	})
	return worst
}

// expiryServer starts a test gateway with cfg (newTestServer) and returns
// it with a function that stores a new session, active now.
func expiryServer(t *testing.T, cfg Config) (*Server, func() *session) {
	s := newTestServer(t, cfg)
	return s, func() *session {
		id := newSessionID()
		sess := &session{id: id, withStreams: s.streamSet(id)}
		t.Cleanup(sess.cancel)
		sess.created = s.clock.Now()
		sess.lastActive.Store(s.clock.Now())
		require.NoError(t, s.storeSession(sess))
		return sess
	}
}

// TestExpiryWheelDropsEnded, in a synctest bubble: sessions that end other
// than by expiry (DELETE here) leave their wheels at the next checks once
// they are half of what the wheels hold, instead of staying referenced for
// a whole idle timeout; the live ones stay on the wheels and still expire.
func TestExpiryWheelDropsEnded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const idle = 30 * time.Minute // the default: expiry checks far apart
		s, mk := expiryServer(t, Config{SessionIdleTimeout: idle, SweepInterval: time.Second, Shards: 2})
		onWheels := func() (live, ended int) {
			for _, w := range s.wheels {
				w.mu.Lock()
				for _, list := range w.due {
					for _, sess := range list {
						if sess.isClosed() {
							ended++
						} else {
							live++
						}
					}
				}
				w.mu.Unlock()
			}
			return live, ended
		}
		const n, keep = 2000, 100
		all := make([]*session, n)
		for i := range all {
			all[i] = mk()
		}
		for _, sess := range all[keep:] {
			s.endSession(context.Background(), sess, CloseClientDelete, upstreamNow)
		}
		live, ended := onWheels()
		require.Equal(t, keep, live)
		require.Equal(t, n-keep, ended, "not looked for at the end")

		time.Sleep(2 * time.Second) // every shard swept at least once, no expiry check due
		synctest.Wait()
		live, ended = onWheels()
		assert.Equal(t, keep, live, "the live ones stay")
		assert.Zero(t, ended, "the ended ones are gone before their period")
		held := 0
		for _, w := range s.wheels {
			w.mu.Lock()
			held += w.held
			w.mu.Unlock()
		}
		assert.Equal(t, keep, held)

		time.Sleep(idle + idle/32 + 2*time.Second)
		synctest.Wait()
		for _, sess := range all[:keep] {
			_, ok := s.store.Get(sess.id)
			assert.False(t, ok, "a live session still expires after a compaction")
		}
		assert.Equal(t, uint64(keep), s.Metrics().SessionsClosed["idle"])
		live, ended = onWheels()
		assert.Zero(t, live+ended)
	})
}
