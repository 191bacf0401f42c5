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
		s, err := New(Config{Upstream: nopTransport{}, SessionIdleTimeout: idle, SessionMaxAge: 10 * idle,
			SweepInterval: time.Second, Shards: 4, DrainWindow: -1})
		require.NoError(t, err)
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			require.NoError(t, s.Shutdown(ctx))
		}()
		mk := func() *session {
			id := newSessionID()
			sess := &session{id: id, withStreams: s.streamSet(id)}
			t.Cleanup(sess.cancel)
			sess.created = s.clock.Now()
			sess.lastActive.Store(s.clock.Now())
			require.NoError(t, s.storeSession(sess))
			return sess
		}
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
