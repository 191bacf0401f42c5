package shard_test

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/shard"
)

type session struct {
	principal  string
	lastActive atomic.Int64 // unix ns, from a shard.Clock
}

func Example() {
	clock := shard.NewClock(0)
	store, err := shard.New(shard.Config[*session]{
		MaxEntries: 100_000,
		OwnerLimit: 2,
		OwnerOf:    func(s *session) string { return s.principal },
	})
	if err != nil {
		panic(err)
	}

	for _, id := range []string{"4f1c0a9e2b7d4c1e8a3f5b6c7d8e9f00", "9a8b7c6d5e4f30211203948576abcdef", "00112233445566778899aabbccddeeff"} {
		s := &session{principal: "alice"}
		s.lastActive.Store(clock.Now())
		err := store.Create(id, s)
		fmt.Printf("create %s: %v (ErrOwnerFull: %t)\n", id[:4], err == nil, errors.Is(err, shard.ErrOwnerFull))
	}

	if s, ok := store.Get("4f1c0a9e2b7d4c1e8a3f5b6c7d8e9f00"); ok {
		s.lastActive.Store(clock.Now() + int64(time.Hour)) // touched "later"
	}

	// Idle expiry, one shard at a time (SweepLoop does this on a ticker).
	idle := func(_ string, s *session) bool { return clock.Now()-s.lastActive.Load() >= 0 }
	removed := 0
	for i := range store.NumShards() {
		removed += store.SweepShard(i, idle, func(id string, _ *session) {
			fmt.Println("expired", id[:4])
		})
	}
	fmt.Println("removed:", removed, "left:", store.Len(), "alice:", store.OwnerCount("alice"))
	// Output:
	// create 4f1c: true (ErrOwnerFull: false)
	// create 9a8b: true (ErrOwnerFull: false)
	// create 0011: false (ErrOwnerFull: true)
	// expired 9a8b
	// removed: 1 left: 1 alice: 1
}
