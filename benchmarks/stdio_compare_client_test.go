//go:build bench

// Helpers for benchmarks/stdio_compare.sh (the same compiled test binary as
// compare.sh's, driven by environment variables):
//
//   - TestCompareCalls: tools/call CMP_TOOL over CMP_SESSIONS sessions of
//     CMP_TARGET, either closed loop (CMP_RATE 0: CMP_CONC workers back to
//     back) or open loop (CMP_RATE calls/s, due at start + i/rate, latency
//     measured from the due time by CMP_CONC workers, so a stalled target
//     shows in the tail). CMP_TARGET is an MCP endpoint URL, or
//     "stdio:<program>" for the server itself driven over its stdin and
//     stdout, one process per session: the direct baseline.
//   - TestCompareSessionCost: opens sessions one at a time up to each count
//     of CMP_STEPS, timing each (initialize + notifications/initialized:
//     start-up time per session), and after each step reads the resident
//     memory of CMP_PID and of all its descendants from /proc.
//   - TestCompareSessionRate: CMP_CONC workers create CMP_COUNT sessions
//     (initialize + notifications/initialized) and DELETE each at once:
//     sessions created per second, with the processes they start bounded.
package benchmarks

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/valyala/fasthttp"

	"github.com/mcpgate/mcpgate/gateway/jsonrpc"
	"github.com/mcpgate/mcpgate/loadtest/harness"
)

// caller makes one tools/call on session s with request id id and returns
// when its answer arrived.
type caller interface {
	call(s int, id int64) error
	close()
	requests() int64 // requests the target saw, set-up and teardown included
}

// ---- over HTTP ----

type httpCaller struct {
	c        *harness.Client
	hc       *fasthttp.HostClient
	target   string
	sessions []*harness.Session
	suffix   []byte
	reqs     atomic.Int64
}

func newHTTPCaller(t *testing.T, target, tool string, nsess, conns int) *httpCaller {
	c, err := harness.NewClient(harness.ClientConfig{Target: target, Version: "2025-11-25", Conns: conns, StreamConns: 4, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	h := &httpCaller{c: c, target: target,
		hc:     &fasthttp.HostClient{Addr: u.Host, MaxConns: conns, MaxConnWaitTimeout: 30 * time.Second, ReadBufferSize: 16 << 10, NoDefaultUserAgentHeader: true},
		suffix: []byte(`,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`)}
	for i := 0; i < nsess; i++ {
		s, err := c.Initialize()
		h.reqs.Add(2)
		if err != nil {
			t.Fatalf("initialize %d: %v", i, err)
		}
		h.sessions = append(h.sessions, s)
	}
	return h
}

func (h *httpCaller) call(s int, id int64) error {
	sess := h.sessions[s]
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(h.target)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", sess.ID)
	req.Header.Set("MCP-Protocol-Version", sess.Version)
	body := append(strconv.AppendInt([]byte(`{"jsonrpc":"2.0","id":`), id, 10), h.suffix...)
	req.SetBodyRaw(body)
	err := h.hc.DoDeadline(req, resp, time.Now().Add(30*time.Second))
	h.reqs.Add(1)
	switch {
	case err != nil:
		return err
	case resp.StatusCode() != fasthttp.StatusOK:
		return fmt.Errorf("status %d: %.200s", resp.StatusCode(), resp.Body())
	case !bytes.Contains(resp.Body(), []byte(`"result"`)):
		return fmt.Errorf("no result: %.200s", resp.Body())
	}
	return nil
}

func (h *httpCaller) close() {
	for _, s := range h.sessions {
		_ = h.c.Delete(s)
		h.reqs.Add(1)
	}
	h.c.Close()
}

func (h *httpCaller) requests() int64 { return h.reqs.Load() }

// ---- over stdio, one process per session ----

type stdioProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	wmu sync.Mutex
	// mu guards waiting: answers not yet arrived, by request id.
	mu      sync.Mutex
	waiting map[int64]chan struct{}
	done    chan struct{}
}

type stdioCaller struct {
	procs []*stdioProc
	tool  string
	reqs  atomic.Int64
}

func newStdioCaller(t *testing.T, program, tool string, nsess int) *stdioCaller {
	sc := &stdioCaller{tool: tool}
	for i := 0; i < nsess; i++ {
		p := &stdioProc{cmd: exec.Command(program), waiting: map[int64]chan struct{}{}, done: make(chan struct{})}
		in, err := p.cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out, err := p.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		p.in = in
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go p.read(out)
		sc.procs = append(sc.procs, p)
		init := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`
		if err := p.roundTrip(0, []byte(init)); err != nil {
			t.Fatalf("stdio initialize %d: %v", i, err)
		}
		if err := p.write([]byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
			t.Fatal(err)
		}
		sc.reqs.Add(2)
	}
	return sc
}

func (p *stdioProc) read(out io.Reader) {
	defer close(p.done)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var parser jsonrpc.Parser
	for sc.Scan() {
		msgs, _, perr := parser.Parse(sc.Bytes())
		if perr != nil || len(msgs) != 1 || (msgs[0].Kind != jsonrpc.KindResponse && msgs[0].Kind != jsonrpc.KindError) {
			continue
		}
		id, err := strconv.ParseInt(string(msgs[0].ID), 10, 64)
		if err != nil {
			continue
		}
		p.mu.Lock()
		c := p.waiting[id]
		delete(p.waiting, id)
		p.mu.Unlock()
		if c != nil {
			close(c)
		}
	}
}

func (p *stdioProc) write(msg []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, err := p.in.Write(append(msg, '\n'))
	return err
}

func (p *stdioProc) roundTrip(id int64, msg []byte) error {
	c := make(chan struct{})
	p.mu.Lock()
	p.waiting[id] = c
	p.mu.Unlock()
	if err := p.write(msg); err != nil {
		return err
	}
	select {
	case <-c:
		return nil
	case <-p.done:
		return errors.New("the process ended")
	case <-time.After(30 * time.Second):
		return errors.New("no answer within 30s")
	}
}

func (sc *stdioCaller) call(s int, id int64) error {
	sc.reqs.Add(1)
	msg := append(strconv.AppendInt([]byte(`{"jsonrpc":"2.0","id":`), id, 10), `,"method":"tools/call","params":{"name":"`+sc.tool+`","arguments":{}}}`...)
	return sc.procs[s].roundTrip(id, msg)
}

func (sc *stdioCaller) close() {
	for _, p := range sc.procs {
		_ = p.in.Close()
	}
	for _, p := range sc.procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
		}
		_ = p.cmd.Wait()
	}
}

func (sc *stdioCaller) requests() int64 { return sc.reqs.Load() }

// TestCompareCalls: see the file comment.
func TestCompareCalls(t *testing.T) {
	target := envString(t, "CMP_TARGET", "")
	tool := envString(t, "CMP_TOOL", "test_simple_text")
	conc := envInt(t, "CMP_CONC", 16)
	nsess := envInt(t, "CMP_SESSIONS", conc)
	rate := float64(envInt(t, "CMP_RATE", 0))
	warmup := envDuration(t, "CMP_WARMUP", time.Second)
	duration := envDuration(t, "CMP_DURATION", 5*time.Second)

	var cl caller
	if prog, ok := strings.CutPrefix(target, "stdio:"); ok {
		cl = newStdioCaller(t, prog, tool, nsess)
	} else {
		cl = newHTTPCaller(t, target, tool, nsess, conc)
	}
	u0, s0 := cpuSeconds()
	start := time.Now()
	measureFrom := start.Add(warmup)
	end := measureFrom.Add(duration)
	hists := make([]*hdrhistogram.Histogram, conc)
	var measured, errs, ids atomic.Int64
	var firstErr atomic.Value
	record := func(w int, due, done time.Time, err error) {
		if err != nil {
			errs.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
			return
		}
		if !due.Before(measureFrom) && due.Before(end) {
			measured.Add(1)
			_ = hists[w].RecordValue(done.Sub(due).Microseconds())
		}
	}
	var wg sync.WaitGroup
	type job struct {
		due time.Time
		s   int
	}
	var jobs chan job
	if rate > 0 {
		jobs = make(chan job, 1<<16)
	}
	for w := range conc {
		hists[w] = hdrhistogram.New(1, 60_000_000, 3)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if jobs != nil { // open loop: take due calls
				for j := range jobs {
					err := cl.call(j.s, ids.Add(1))
					record(w, j.due, time.Now(), err)
				}
				return
			}
			for { // closed loop
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				err := cl.call(w%nsess, ids.Add(1))
				record(w, t0, time.Now(), err)
			}
		}()
	}
	if jobs != nil {
		for i := 0; ; i++ {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if !due.Before(end) {
				break
			}
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			jobs <- job{due: due, s: i % nsess}
		}
		close(jobs)
	}
	wg.Wait()
	wall := time.Since(start).Seconds()
	u1, s1 := cpuSeconds()
	cl.close()
	h := hdrhistogram.New(1, 60_000_000, 3)
	for _, x := range hists {
		h.Merge(x)
	}
	ms := func(q float64) float64 { return float64(h.ValueAtQuantile(q)) / 1000 }
	res := map[string]any{
		"target": target, "tool": tool, "conc": conc, "sessions": nsess, "rate": rate,
		"measured_s": duration.Seconds(), "completed": measured.Load(),
		"rps":    float64(measured.Load()) / duration.Seconds(),
		"p50_ms": ms(50), "p90_ms": ms(90), "p99_ms": ms(99), "p99_9_ms": ms(99.9),
		"max_ms": float64(h.Max()) / 1000, "errors": errs.Load(), "requests": cl.requests(),
		"client_cpu_s": (u1 - u0) + (s1 - s0), "client_wall_s": wall,
	}
	if e := firstErr.Load(); e != nil {
		res["first_error"] = e
	}
	printResult(t, res)
}

// rssKiB returns the resident memory of pid (VmRSS), 0 if it is gone.
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// descendants lists the processes below pid, from /proc.
func descendants(pid int) []int {
	parent := map[int]int{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 {
			pp, _ := strconv.Atoi(f[1])
			parent[p] = pp
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for c, pp := range parent {
			if pp == p {
				out = append(out, c)
				walk(c)
			}
		}
	}
	walk(pid)
	return out
}

// TestCompareSessionCost: see the file comment.
func TestCompareSessionCost(t *testing.T) {
	target := envString(t, "CMP_TARGET", "")
	pid := envInt(t, "CMP_PID", 0)
	settle := envDuration(t, "CMP_SETTLE", 2*time.Second)
	var steps []int
	for _, f := range strings.Split(envString(t, "CMP_STEPS", "5,25"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatalf("CMP_STEPS: %v", err)
		}
		steps = append(steps, n)
	}
	c, err := harness.NewClient(harness.ClientConfig{Target: target, Version: "2025-11-25", Conns: 1, StreamConns: 1, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opened := 0
	for _, step := range steps {
		var startup []float64
		for ; opened < step; opened++ {
			t0 := time.Now()
			if _, err := c.Initialize(); err != nil {
				t.Fatalf("initialize %d: %v", opened, err)
			}
			startup = append(startup, float64(time.Since(t0).Microseconds())/1000)
		}
		time.Sleep(settle)
		front := rssKiB(pid)
		tree := front
		kids := descendants(pid)
		for _, k := range kids {
			tree += rssKiB(k)
		}
		sort.Float64s(startup)
		printResult(t, map[string]any{
			"sessions": step, "front_rss_kib": front, "tree_rss_kib": tree, "processes": len(kids),
			"startup_p50_ms": startup[len(startup)/2], "startup_max_ms": startup[len(startup)-1],
		})
	}
}

// TestCompareSessionRate: see the file comment.
func TestCompareSessionRate(t *testing.T) {
	target := envString(t, "CMP_TARGET", "")
	conc := envInt(t, "CMP_CONC", 8)
	count := envInt(t, "CMP_COUNT", 300)
	c, err := harness.NewClient(harness.ClientConfig{Target: target, Version: "2025-11-25", Conns: conc, StreamConns: 1, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var next, errs atomic.Int64
	var firstErr atomic.Value
	u0, s0 := cpuSeconds()
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(count) {
				s, err := c.Initialize()
				if err == nil {
					err = c.Delete(s)
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	u1, s1 := cpuSeconds()
	res := map[string]any{"target": target, "conc": conc, "sessions": count, "wall_s": secs,
		"sessions_per_s": float64(count) / secs, "errors": errs.Load(), "requests": 3 * count,
		"client_cpu_s": (u1 - u0) + (s1 - s0)}
	if e := firstErr.Load(); e != nil {
		res["first_error"] = e
	}
	printResult(t, res)
}
