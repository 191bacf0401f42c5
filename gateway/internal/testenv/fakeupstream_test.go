package testenv

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway/upstream"
)

func connect(t *testing.T, f *FakeUpstream, body string) (upstream.Session, string) {
	t.Helper()
	s, answer, err := f.Connect(context.Background(), []byte(body))
	require.NoError(t, err)
	require.NotNil(t, s)
	return s, string(answer)
}

func TestFakeAnswersEchoTheReceivedIDs(t *testing.T) {
	f := NewFakeUpstream(t)
	s, answer := connect(t, f, `{"jsonrpc":"2.0","id":"init-7","method":"initialize","params":{"protocolVersion":"2025-06-18"}}`)
	assert.JSONEq(t, `{"jsonrpc":"2.0","id":"init-7","result":{"protocolVersion":"2025-06-18","capabilities":{"logging":{},"tools":{"listChanged":true}},"serverInfo":{"name":"fake-upstream","version":"1.0.0"}}}`, answer)
	assert.Equal(t, "2025-06-18", s.Version())

	f.On("a", Result(`{"x":1}`), RPCError(-32602, "bad"), HTTPStatus(400, -32600, "no"))
	ctx := context.Background()
	r, err := s.Send(ctx, []byte(`{"jsonrpc":"2.0","id":41,"method":"a"}`))
	require.NoError(t, err)
	assert.Equal(t, `{"jsonrpc":"2.0","id":41,"result":{"x":1}}`, string(r.JSON))
	r, err = s.Send(ctx, []byte(`{"jsonrpc":"2.0","id":"q","method":"a"}`))
	require.NoError(t, err)
	assert.Equal(t, `{"jsonrpc":"2.0","id":"q","error":{"code":-32602,"message":"bad"}}`, string(r.JSON))
	for i := 0; i < 2; i++ { // the last answer repeats
		_, err = s.Send(ctx, []byte(`{"jsonrpc":"2.0","id":5,"method":"a"}`))
		var se *upstream.StatusError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, 400, se.Status)
		assert.Equal(t, `{"jsonrpc":"2.0","id":5,"error":{"code":-32600,"message":"no"}}`, string(se.Body))
	}

	f.On("s", Stream(Progress(1), Respond(`{}`)))
	r, err = s.Send(ctx, []byte(`{"jsonrpc":"2.0","id":9,"method":"s","params":{"_meta":{"progressToken":"tok"}}}`))
	require.NoError(t, err)
	msg, err := r.Stream.Next()
	require.NoError(t, err)
	assert.Equal(t, `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"tok","progress":1}}`, string(msg))
	msg, err = r.Stream.Next()
	require.NoError(t, err)
	assert.Equal(t, `{"jsonrpc":"2.0","id":9,"result":{}}`, string(msg))
	_, err = r.Stream.Next()
	assert.Equal(t, io.EOF, err)
	require.NoError(t, r.Stream.Close())
}

func TestFakeDefaultsAndBatches(t *testing.T) {
	f := NewFakeUpstream(t)
	s, _ := connect(t, f, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"1999-01-01"}}`)
	assert.Equal(t, "2025-11-25", s.Version(), "an unserved version gets the latest")
	ctx := context.Background()
	r, err := s.Send(ctx, []byte(`{"jsonrpc":"2.0","id":1,"method":"nope"}`))
	require.NoError(t, err)
	assert.Contains(t, string(r.JSON), `-32601`)
	r, err = s.Send(ctx, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	require.NoError(t, err)
	assert.True(t, r.Accepted)

	f.On("a", Result(`1`))
	r, err = s.Send(ctx, []byte(`[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":"b","method":"a"}]`))
	require.NoError(t, err)
	assert.Equal(t, `[{"jsonrpc":"2.0","id":1,"result":1},{"jsonrpc":"2.0","id":"b","result":1}]`, string(r.JSON))
	r, err = s.Send(ctx, []byte(`[{"jsonrpc":"2.0","method":"n"}]`))
	require.NoError(t, err)
	assert.True(t, r.Accepted)

	assert.Equal(t, []string{
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"1999-01-01"}}`,
		`{"jsonrpc":"2.0","id":1,"method":"nope"}`,
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		`[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":"b","method":"a"}]`,
		`[{"jsonrpc":"2.0","method":"n"}]`,
	}, f.Sent())
}

func TestFakeConnectScripts(t *testing.T) {
	f := NewFakeUpstream(t)
	f.OnConnect(RPCError(-32602, "no"), Fail(upstream.ErrTimeout), Result(`{"protocolVersion":"2024-11-05"}`))
	s, answer, err := f.Connect(context.Background(), []byte(`{"jsonrpc":"2.0","id":3,"method":"initialize"}`))
	require.NoError(t, err)
	assert.Nil(t, s)
	assert.Equal(t, `{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"no"}}`, string(answer))
	_, _, err = f.Connect(context.Background(), []byte(`{"jsonrpc":"2.0","id":3,"method":"initialize"}`))
	assert.ErrorIs(t, err, upstream.ErrTimeout)
	s, _ = connect(t, f, `{"jsonrpc":"2.0","id":3,"method":"initialize"}`)
	assert.Equal(t, "2024-11-05", s.Version())
	assert.Equal(t, 1, s.(*FakeSession).N())
}

// TestFakeGatesStopAndClose: a delayed answer waits for its gate; Stop
// releases every waiting call; Close interrupts a stream paused in Next.
func TestFakeGatesStopAndClose(t *testing.T) {
	f := NewFakeUpstream(t)
	s, _ := connect(t, f, `{"jsonrpc":"2.0","id":1,"method":"initialize"}`)
	g := NewGate("g")
	f.On("slow", Result(`{}`).After(g))
	done := make(chan error, 1)
	go func() {
		_, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":1,"method":"slow"}`))
		done <- err
	}()
	g.WaitReached(t)
	select {
	case <-done:
		t.Fatal("Send returned before its gate was released")
	default:
	}
	g.Release()
	require.NoError(t, <-done)

	ctx, cancel := context.WithCancel(context.Background())
	never := NewGate("never")
	f.On("never", Result(`{}`).After(never))
	go func() {
		_, err := s.Send(ctx, []byte(`{"jsonrpc":"2.0","id":2,"method":"never"}`))
		done <- err
	}()
	never.WaitReached(t)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled, "the call's context ends the wait")

	pause := NewGate("pause")
	f.On("st", Stream(Msg(`{"a":1}`), Pause(pause), Msg(`{"b":2}`)))
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":3,"method":"st"}`))
	require.NoError(t, err)
	_, err = r.Stream.Next()
	require.NoError(t, err)
	go func() {
		_, err := r.Stream.Next()
		done <- err
	}()
	pause.WaitReached(t)
	require.NoError(t, r.Stream.Close())
	require.NoError(t, r.Stream.Close(), "Close is idempotent")
	assert.Error(t, <-done, "Close interrupts a paused Next")

	stopped := NewGate("stopped")
	f.On("stop", Result(`{}`).After(stopped))
	go func() {
		_, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":4,"method":"stop"}`))
		done <- err
	}()
	stopped.WaitReached(t)
	f.Stop()
	assert.ErrorIs(t, <-done, upstream.ErrUnavailable, "Stop releases waiting calls")
	_, err = s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":5,"method":"x"}`))
	assert.ErrorIs(t, err, upstream.ErrUnavailable, "calls after Stop fail")
}

func TestFakeStandaloneStream(t *testing.T) {
	f := NewFakeUpstream(t)
	s, _ := connect(t, f, `{"jsonrpc":"2.0","id":1,"method":"initialize"}`)
	fs := s.(*FakeSession)
	fs.Push(`{"m":1}`) // before Listen: kept for it
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := s.Listen(ctx)
	require.NoError(t, err)
	msg, err := st.Next()
	require.NoError(t, err)
	assert.Equal(t, `{"m":1}`, string(msg))

	idle := func(v *FakeView) bool { return v.StreamsIdle() }
	got := make(chan string, 1)
	go func() {
		msg, err := st.Next()
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(msg)
	}()
	f.WaitFor(t, "the reader waits", idle)
	fs.Push(`{"m":2}`)
	assert.Equal(t, `{"m":2}`, <-got)

	fs.CutListen(upstream.ErrUnavailable)
	_, err = st.Next()
	assert.ErrorIs(t, err, upstream.ErrUnavailable)
	require.NoError(t, st.Close())

	st2, err := s.Listen(ctx)
	require.NoError(t, err)
	go func() {
		_, err := st2.Next()
		got <- err.Error()
	}()
	f.WaitFor(t, "the second reader waits", idle)
	cancel()
	assert.NotEmpty(t, <-got, "the Listen context ends a waiting Next")
	require.NoError(t, st2.Close())

	f.OnListen(upstream.ErrNotSupported)
	_, err = s.Listen(context.Background())
	assert.ErrorIs(t, err, upstream.ErrNotSupported)
	require.NoError(t, s.Close(context.Background()))
	assert.True(t, fs.Closed())

	var ops []string
	for _, r := range f.Records() {
		ops = append(ops, r.Op)
	}
	assert.Equal(t, []string{"connect", "listen", "listen", "listen", "close"}, ops)
	assert.Contains(t, f.Transcript(), "stream (standalone): yielded 2, then cut: upstream: unavailable, then closed")
}

// TestFakeStreamsIdleAfterRelease: a stream is not idle between a gate's
// release and its reader taking the next message.
func TestFakeStreamsIdleAfterRelease(t *testing.T) {
	f := NewFakeUpstream(t)
	s, _ := connect(t, f, `{"jsonrpc":"2.0","id":1,"method":"initialize"}`)
	g := NewGate("g")
	f.On("st", Stream(Pause(g), Msg(`{"a":1}`)))
	r, err := s.Send(context.Background(), []byte(`{"jsonrpc":"2.0","id":3,"method":"st"}`))
	require.NoError(t, err)
	got := make(chan []byte, 1)
	go func() {
		msg, _ := r.Stream.Next()
		got <- msg
	}()
	f.WaitFor(t, "paused", func(v *FakeView) bool { return v.StreamsIdle() })
	g.Release()
	f.mu.Lock()
	idle := (&FakeView{f: f}).StreamsIdle()
	f.mu.Unlock()
	// Whether or not the reader woke yet, it has not come back for more.
	assert.False(t, idle, "idle right after a release")
	assert.Equal(t, `{"a":1}`, string(<-got))
	_, err = r.Stream.Next()
	assert.Equal(t, io.EOF, err)
	f.WaitFor(t, "ended", func(v *FakeView) bool { return v.StreamEnded(1) && v.StreamsIdle() })
	require.NoError(t, r.Stream.Close())
}
