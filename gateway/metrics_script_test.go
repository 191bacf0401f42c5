package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcpgate/mcpgate/gateway"
	"github.com/mcpgate/mcpgate/gateway/internal/testenv"
	"github.com/mcpgate/mcpgate/gateway/upstream"
)

// exposition scrapes an admin listener's /metrics, parses it with the
// Prometheus library's own parser and returns every sample by
// name{label="value",...} (labels in name order, as the parser gives
// them); a histogram's entry is its sample count.
func exposition(t *testing.T, adminURL string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err, "the exposition parses")
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName(), l.GetValue())
			}
			v := m.GetUntyped().GetValue()
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Histogram != nil:
				v = float64(m.GetHistogram().GetSampleCount())
			}
			out[sampleKey(name, labels...)] = v
		}
	}
	return out
}

// sampleKey is name{k="v",...} for label pairs k, v.
func sampleKey(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name + "{")
	for i := 0; i+1 < len(labels); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(labels[i] + "=" + strconv.Quote(labels[i+1]))
	}
	b.WriteByte('}')
	return b.String()
}

// sample is the value of one sample of a scrape; -1 if absent.
func sample(fams map[string]float64, name string, labels ...string) float64 {
	if v, ok := fams[sampleKey(name, labels...)]; ok {
		return v
	}
	return -1
}

// TestMetricsCountTheScript: after a scripted run against the fake
// upstream (sessions opened, refused at the cap, deleted by the client and
// by the admin API; JSON, streamed and failing calls; a ping; a standalone
// stream with pushed events, a resume that replaces its connection and one
// that is refused; requests for no session), every counter of the
// exposition equals what the script did, and so do the latency
// histograms' counts by method class.
func TestMetricsCountTheScript(t *testing.T) {
	fake := testenv.NewFakeUpstream(t)
	fake.On("tools/list", testenv.Result(`{"tools":[]}`))
	fake.On("tools/call", testenv.Stream(testenv.Progress(1), testenv.Progress(2), testenv.Respond(`{"content":[]}`)))
	fake.On("prompts/get", testenv.Fail(upstream.ErrTimeout))
	fake.On("resources/read", testenv.Fail(upstream.ErrUnavailable))
	fake.On("resources/list", testenv.HTTPStatus(http.StatusInternalServerError, -32603, "boom"))
	g := startLive(t, gateway.Config{Upstream: fake, MaxSessions: 3, AdminToken: "tok", DrainWindow: -1})
	admin := httptest.NewServer(g.srv.AdminHandler(true))
	defer admin.Close()

	a, b, c := g.initialize(), g.initialize(), g.initialize() // 3 initialize + 3 notifications/initialized
	st, _ := g.postJSON("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	require.Equal(t, http.StatusServiceUnavailable, st, "the fourth session is over the cap")

	for i := 0; i < 2; i++ {
		st, body := g.postJSON(a, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
		require.Equal(t, http.StatusOK, st, body)
	}
	call := g.post(a, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":"p"}}}`)
	require.Equal(t, http.StatusOK, call.StatusCode)
	got := (&sseReader{t: t, br: bufioReader(call.Body)}).want(3) // two progress, the response
	assert.Contains(t, got[2].data, `"result"`)
	call.Body.Close()
	st, _ = g.postJSON(a, `{"jsonrpc":"2.0","id":4,"method":"ping"}`)
	require.Equal(t, http.StatusOK, st)
	st, _ = g.postJSON(a, `{"jsonrpc":"2.0","id":5,"method":"prompts/get","params":{"name":"p"}}`)
	require.Equal(t, http.StatusGatewayTimeout, st)
	st, _ = g.postJSON(a, `{"jsonrpc":"2.0","id":6,"method":"resources/read","params":{"uri":"x"}}`)
	require.Equal(t, http.StatusBadGateway, st)
	st, _ = g.postJSON(a, `{"jsonrpc":"2.0","id":7,"method":"resources/list"}`)
	require.Equal(t, http.StatusBadGateway, st, "an upstream 500")
	st, _ = g.postJSON(strings.Repeat("0", 32), `{"jsonrpc":"2.0","id":8,"method":"tools/list"}`)
	require.Equal(t, http.StatusNotFound, st)

	_, r0 := g.get(a, "")
	fake.Session(1).Push(logEvent(1))
	fake.Session(1).Push(logEvent(2))
	r0.want(2)
	resp, r1 := g.get(a, "0_1")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "0_2", r1.want(1)[0].id, "the resume replays, and replaces the first connection")
	resp, _ = g.get(a, "0_99")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	req, _ := http.NewRequest(http.MethodDelete, g.url, nil)
	req.Header.Set("Mcp-Session-Id", b)
	dresp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	dresp.Body.Close()
	require.Equal(t, http.StatusNoContent, dresp.StatusCode)
	areq, _ := http.NewRequest(http.MethodDelete, admin.URL+"/admin/v1/sessions/"+c, nil)
	areq.Header.Set("Authorization", "Bearer tok")
	aresp, err := http.DefaultClient.Do(areq)
	require.NoError(t, err)
	aresp.Body.Close()
	require.Equal(t, http.StatusNoContent, aresp.StatusCode)

	// The replaced connection's end is counted once its writer saw it.
	var fams map[string]float64
	require.Eventually(t, func() bool {
		fams = exposition(t, admin.URL)
		return sample(fams, "mcpgate_streams_closed_total", "reason", "replaced") == 1 &&
			sample(fams, "mcpgate_streams_closed_total", "reason", "finished") == 1
	}, 5*time.Second, 5*time.Millisecond)

	for _, want := range []struct {
		name   string
		labels []string
		v      float64
	}{
		{"mcpgate_sessions", nil, 1},
		{"mcpgate_sessions_created_total", nil, 3},
		{"mcpgate_sessions_rejected_total", nil, 1},
		{"mcpgate_sessions_restored_total", nil, 0},
		{"mcpgate_sessions_closed_total", []string{"reason", "client_delete"}, 1},
		{"mcpgate_sessions_closed_total", []string{"reason", "admin"}, 1},
		{"mcpgate_sessions_closed_total", []string{"reason", "idle"}, 0},
		// 3 initialize, 3 notifications/initialized, 2 tools/list, 1 tools/call,
		// prompts/get, resources/read, resources/list (the ping is the gateway's).
		{"mcpgate_requests_total", nil, 12},
		{"mcpgate_upstream_errors_total", []string{"kind", "timeout"}, 1},
		{"mcpgate_upstream_errors_total", []string{"kind", "unavailable"}, 1},
		{"mcpgate_upstream_errors_total", []string{"kind", "status"}, 1},
		{"mcpgate_upstream_errors_total", []string{"kind", "session_gone"}, 0},
		// The call's answer (2 progress + response) and the two pushes.
		{"mcpgate_events_pushed_total", nil, 5},
		{"mcpgate_events_dropped_total", []string{"reason", "oldest"}, 0},
		{"mcpgate_events_coalesced_total", nil, 0},
		// The POST answer, the standalone GET, its resume.
		{"mcpgate_streams_opened_total", nil, 3},
		{"mcpgate_streams_closed_total", []string{"reason", "finished"}, 1},
		{"mcpgate_streams_closed_total", []string{"reason", "replaced"}, 1},
		{"mcpgate_stream_replacements_total", nil, 1},
		{"mcpgate_resume_hits_total", nil, 1},
		{"mcpgate_resume_misses_total", nil, 1},
		{"mcpgate_streams", []string{"kind", "standalone", "state", "connected"}, 1},
		{"mcpgate_streams", []string{"kind", "answer", "state", "finished"}, 1},
		{"mcpgate_ring_events", nil, 5},
		{"mcpgate_shard_sessions", []string{"stat", "max"}, 1},
		// 2xx: 3 initialize, 3 initialized (202), 2 tools/list, 3 stream
		// attachments, the ping, the DELETE (204); 4xx: the unknown session,
		// the refused resume; 5xx: the cap, 504, 502, 502.
		{"mcpgate_http_responses_total", []string{"class", "2xx"}, 13},
		{"mcpgate_http_responses_total", []string{"class", "4xx"}, 2},
		{"mcpgate_http_responses_total", []string{"class", "5xx"}, 4},
		// Every parsed POST, by the class of its method.
		{"mcpgate_request_duration_seconds", []string{"class", "initialize"}, 4},
		{"mcpgate_request_duration_seconds", []string{"class", "notification"}, 3},
		{"mcpgate_request_duration_seconds", []string{"class", "list"}, 4},
		{"mcpgate_request_duration_seconds", []string{"class", "tools_call"}, 1},
		{"mcpgate_request_duration_seconds", []string{"class", "read"}, 2},
		{"mcpgate_request_duration_seconds", []string{"class", "other"}, 1},
		// Every message that went upstream.
		{"mcpgate_upstream_request_duration_seconds", []string{"class", "initialize"}, 3},
		{"mcpgate_upstream_request_duration_seconds", []string{"class", "notification"}, 3},
		{"mcpgate_upstream_request_duration_seconds", []string{"class", "list"}, 3},
		{"mcpgate_upstream_request_duration_seconds", []string{"class", "tools_call"}, 1},
		{"mcpgate_upstream_request_duration_seconds", []string{"class", "read"}, 2},
		{"mcpgate_upstream_request_duration_seconds", []string{"class", "other"}, 0},
	} {
		assert.Equal(t, want.v, sample(fams, want.name, want.labels...), "%s%v", want.name, want.labels)
	}
	// The Go and process collectors are there too.
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes", "process_cpu_seconds_total"} {
		assert.Positive(t, sample(fams, name), name)
	}
}
