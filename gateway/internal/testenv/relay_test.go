package testenv

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sseServer answers POST with an SSE stream whose event id is "post-id",
// GET without Last-Event-ID with one whose id is "get-id", and a resume with
// an event after the id it names; every stream stays open until the client
// goes.
func sseServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := "get-id"
		switch {
		case r.Method == http.MethodPost:
			id = "post-id"
		case r.Header.Get("Last-Event-ID") != "":
			id = r.Header.Get("Last-Event-ID") + "-next"
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "id: %s\ndata: {}\n\n", id)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// open sends a request through the relay and returns the response once its
// first event arrived.
func open(t *testing.T, hc *http.Client, url, method, lastID string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("{}")
	}
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := hc.Do(req)
	require.NoError(t, err)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	return resp, strings.TrimSpace(strings.TrimPrefix(line, "id:"))
}

func TestRelayClassifiesAndCutsByKind(t *testing.T) {
	srv := sseServer(t)
	relay := StartRelay(t, strings.TrimPrefix(srv.URL, "http://"))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	url := "http://" + relay.Addr() + "/mcp"

	post, postID := open(t, hc, url, http.MethodPost, "")
	defer post.Body.Close()
	get, getID := open(t, hc, url, http.MethodGet, "")
	defer get.Body.Close()
	assert.Equal(t, "post-id", postID)
	assert.Equal(t, "get-id", getID)
	require.True(t, relay.WaitLive(nil, 5*time.Second, ConnStreams))

	// Resumes are classified by the stream that carried the id, whatever
	// its form.
	resumeGet, _ := open(t, hc, url, http.MethodGet, getID)
	defer resumeGet.Body.Close()
	resumePost, _ := open(t, hc, url, http.MethodGet, postID)
	defer resumePost.Body.Close()
	require.True(t, relay.WaitFor(nil, 5*time.Second, func(live map[ConnKind]int) bool {
		return live[ConnAnswer] == 2 && live[ConnStandalone] == 2
	}), "live: %v", relay.Live())

	cut := relay.Cut(ConnStandalone)
	assert.Equal(t, map[ConnKind]int{ConnStandalone: 2}, cut)
	_, err := bufio.NewReader(get.Body).ReadString('\n')
	assert.Error(t, err, "the standalone stream was cut")
	assert.Equal(t, map[ConnKind]int{ConnAnswer: 2}, relay.Live(), "answer streams untouched")
	assert.Equal(t, 2, relay.CutAll())
	assert.Equal(t, int64(4), relay.Cuts())
	assert.Equal(t, map[ConnKind]int{}, relay.Live())

	// An unknown id is judged by its form: stream 0 is the standalone one.
	s0, _ := open(t, hc, url, http.MethodGet, "0_7")
	defer s0.Body.Close()
	s3, _ := open(t, hc, url, http.MethodGet, "3_7")
	defer s3.Body.Close()
	require.True(t, relay.WaitLive(nil, 5*time.Second, ConnStreams), "live: %v", relay.Live())
}

func TestRelayHoldsNewConnections(t *testing.T) {
	srv := sseServer(t)
	relay := StartRelay(t, strings.TrimPrefix(srv.URL, "http://"))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	url := "http://" + relay.Addr() + "/mcp"

	release := relay.Hold()
	got := make(chan error, 1)
	go func() {
		resp, err := hc.Get(url)
		if err == nil {
			_, err = bufio.NewReader(resp.Body).ReadString('\n')
			resp.Body.Close()
		}
		got <- err
	}()
	assert.False(t, relay.WaitLive(nil, 200*time.Millisecond, ConnStandalone), "held back")
	assert.Zero(t, relay.Accepted())
	release()
	require.NoError(t, <-got)
	assert.Equal(t, int64(1), relay.Accepted())
	release() // twice is fine
}
