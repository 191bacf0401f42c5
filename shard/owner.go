package shard

import "sync/atomic"

// ownerCounter counts the entries of one owner. n >= 0 while the counter is
// live; ownerDead marks a counter that dropped to zero and is being removed
// from Store.owners. A dead counter never becomes live again, so an owner's
// entries are always counted on the counter the map holds.
type ownerCounter struct {
	n atomic.Int64
}

const ownerDead = -1

func newOwnerCounter() *ownerCounter { return new(ownerCounter) }

// reserveOwner takes one entry of owner's count, respecting OwnerLimit.
// The counter is created on first use; no lock is held while counting.
func (s *Store[V]) reserveOwner(owner string) bool {
	for {
		c, _ := s.owners.LoadOrCompute(owner, newOwnerCounter)
		for {
			n := c.n.Load()
			if n == ownerDead {
				break
			}
			if s.ownerLimit > 0 && n >= s.ownerLimit {
				return false
			}
			if c.n.CompareAndSwap(n, n+1) {
				return true
			}
		}
		// c reached zero and was marked dead by a release that has not
		// removed it yet: help remove it, then start over with a new one.
		s.removeOwnerCounter(owner, c)
	}
}

// releaseOwner returns one entry of owner's count. The counter that reaches
// zero is marked dead and removed, so owners do not accumulate.
func (s *Store[V]) releaseOwner(owner string) {
	c, ok := s.owners.Load(owner)
	if !ok {
		// Unreachable while OwnerOf is stable: a held reservation keeps its
		// counter live and in the map.
		return
	}
	if c.n.Add(-1) == 0 && c.n.CompareAndSwap(0, ownerDead) {
		s.removeOwnerCounter(owner, c)
	}
}

// removeOwnerCounter deletes owner from the map if it still maps to the dead
// counter c. The function runs under the bucket lock and is trivial.
func (s *Store[V]) removeOwnerCounter(owner string, c *ownerCounter) {
	s.owners.Compute(owner, func(old *ownerCounter, loaded bool) (*ownerCounter, bool) {
		if !loaded || old == c {
			return old, true // delete (a no-op when absent)
		}
		return old, false // a newer counter: keep it
	})
}

// OwnerCount returns the number of entries held by owner (0 when the store
// has no OwnerOf). Like Len, it may count a Create in progress.
func (s *Store[V]) OwnerCount(owner string) int {
	if s.owners == nil {
		return 0
	}
	c, ok := s.owners.Load(owner)
	if !ok {
		return 0
	}
	n := c.n.Load()
	if n < 0 {
		return 0
	}
	return int(n)
}
