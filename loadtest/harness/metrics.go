package harness

import (
	"bufio"
	"bytes"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// ParseMetric returns the value of the first sample of metric name (with or without
// labels) in a Prometheus text exposition.
func ParseMetric(text []byte, name string) (float64, bool) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' || !bytes.HasPrefix(line, []byte(name)) {
			continue
		}
		rest := line[len(name):]
		if len(rest) == 0 {
			continue
		}
		switch rest[0] {
		case ' ', '\t':
		case '{':
			end := bytes.IndexByte(rest, '}')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		default:
			continue // a longer metric name with this prefix
		}
		fields := bytes.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(string(fields[0]), 64)
		if err != nil {
			continue
		}
		return v, true
	}
	return 0, false
}

// metricsURL is the endpoint sampled by soak, or "" when sampling is off.
func (r *runner) metricsURL() string {
	switch r.cfg.MetricsURL {
	case "off":
		return ""
	case "":
		u, err := url.Parse(r.cfg.Target)
		if err != nil {
			return ""
		}
		u.Path, u.RawQuery = "/metrics", ""
		return u.String()
	}
	return r.cfg.MetricsURL
}

// sampleTarget reads the target's goroutine count, open files and RSS every SampleEvery
// until stop
// closes.
func (r *runner) sampleTarget(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	u := r.metricsURL()
	if u == "" {
		return
	}
	client := &fasthttp.Client{ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	w := r.win()
	sample := func() bool {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(u)
		if err := client.DoTimeout(req, resp, 5*time.Second); err != nil {
			r.note("metrics endpoint %s: %v; sampling stopped", u, err)
			return false
		}
		if resp.StatusCode() != fasthttp.StatusOK {
			r.note("metrics endpoint %s: status %d; sampling stopped", u, resp.StatusCode())
			return false
		}
		g, ok1 := ParseMetric(resp.Body(), "go_goroutines")
		rss, ok2 := ParseMetric(resp.Body(), "process_resident_memory_bytes")
		fds, _ := ParseMetric(resp.Body(), "process_open_fds")
		heap, _ := ParseMetric(resp.Body(), "go_memstats_heap_inuse_bytes")
		if !ok1 && !ok2 {
			r.note("metrics endpoint %s has neither go_goroutines nor process_resident_memory_bytes; sampling stopped", u)
			return false
		}
		r.targetSamples = append(r.targetSamples, TargetSample{T: time.Since(w.start).Seconds(), Goroutines: g, RSSBytes: rss, OpenFDs: fds, HeapBytes: heap})
		return true
	}
	if !sample() {
		return
	}
	tick := time.NewTicker(r.cfg.SampleEvery)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			sample()
			return
		case <-tick.C:
			if !sample() {
				return
			}
		}
	}
}

// String renders a sample for logs.
func (s TargetSample) String() string {
	return fmt.Sprintf("t=%.0fs goroutines=%.0f fds=%.0f rss=%.1fMiB", s.T, s.Goroutines, s.OpenFDs, s.RSSBytes/(1<<20))
}
