package sse_test

import (
	"fmt"
	"io"
	"strings"

	"github.com/mcpgate/mcpgate/gateway/sse"
)

func ExampleAppendStreamEvent() {
	buf := make([]byte, 0, 256)
	buf = sse.AppendStreamEvent(buf, 3, 17, []byte(`{"jsonrpc":"2.0","id":1,"result":{}}`))
	buf = sse.AppendComment(buf, "keep-alive")
	buf = sse.AppendRetry(buf, 1000)
	fmt.Print(string(buf))
	// Output:
	// id: 3_17
	// data: {"jsonrpc":"2.0","id":1,"result":{}}
	//
	// : keep-alive
	//
	// retry: 1000
}

func ExampleDecoder() {
	stream := "event: endpoint\r\ndata: /message?sessionId=s1\r\n\r\n: ping\n\nid: 9\ndata: a\ndata: b\n\n"
	d := sse.NewDecoder(strings.NewReader(stream), 0)
	for {
		ev, err := d.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("event=%q id=%q data=%q\n", ev.Event, ev.ID, ev.Data)
	}
	fmt.Println("comments:", d.Comments(), "last id:", string(d.LastEventID()))
	// Output:
	// event="endpoint" id="" data="/message?sessionId=s1"
	// event="" id="9" data="a\nb"
	// comments: 1 last id: 9
}

func ExampleParseEventID() {
	stream, seq, err := sse.ParseEventID([]byte("3_17"))
	fmt.Println(stream, seq, err)
	_, _, err = sse.ParseEventID([]byte("03_17"))
	fmt.Println(err)
	// Output:
	// 3 17 <nil>
	// sse.ParseEventID: bad stream number: sse: malformed event id
}
