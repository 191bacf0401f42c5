package ringbuf_test

import (
	"errors"
	"fmt"

	"github.com/mcpgate/mcpgate/ringbuf"
)

// The stream writer's loop: copy as many whole events as fit into the write
// buffer, write them in one go, wait for more, stop on ErrClosed.
func Example() {
	r, err := ringbuf.New(ringbuf.Config{Capacity: 8, Policy: ringbuf.DropOldest})
	if err != nil {
		panic(err)
	}
	_, _, _ = r.Push(ringbuf.Droppable, 7, []byte(`{"progress":1}`))
	_, _, _ = r.Push(ringbuf.MustDeliver, 0, []byte(`{"result":{}}`))
	// Room left: the update is kept. Only a full ring coalesces by key.
	_, out, _ := r.Push(ringbuf.Droppable, 7, []byte(`{"progress":2}`))
	fmt.Println(out)
	r.Close()

	buf := make([]byte, 0, 4096)
	var after uint64
	for {
		buf = buf[:0]
		last, skipped, err := r.Next(after, func(seq uint64, data []byte) bool {
			if len(buf)+len(data)+1 > cap(buf) {
				return false // flush first, this event comes again
			}
			buf = fmt.Appendf(buf, "%d %s\n", seq, data)
			return true
		})
		if errors.Is(err, ringbuf.ErrClosed) {
			break
		}
		if err != nil {
			panic(err) // *EvictedError: the client must start over
		}
		fmt.Print(string(buf)) // one write per batch
		if skipped > 0 {
			fmt.Println("skipped", skipped)
		}
		if last == after {
			<-r.Wait()
		}
		after = last
	}
	// Output:
	// accepted
	// 1 {"progress":1}
	// 2 {"result":{}}
	// 3 {"progress":2}
}
