package mockup

import (
	"sync/atomic"
)

// Event kinds counted in Snapshot.Events.
const (
	KindProgress = "progress" // notifications/progress from the stream tool
	KindPush     = "push"     // notifications/message on a GET stream
	// KindListChanged counts notifications/*/list_changed sent by the notify tool.
	KindListChanged = "list_changed"
	KindResultSSE   = "result_sse"  // a response sent as an SSE event
	KindResultJSON  = "result_json" // a response sent as a JSON body
)

// methods counted individually in Snapshot.Requests; anything else counts as "other".
var countedMethods = [...]string{
	"initialize",
	"notifications/initialized",
	"notifications/cancelled",
	"ping",
	"tools/list",
	"tools/call",
	"logging/setLevel",
	"server/discover",
	"other",
}

const methodOther = len(countedMethods) - 1

func methodIndex(m string) int {
	for i, name := range countedMethods[:methodOther] {
		if name == m {
			return i
		}
	}
	return methodOther
}

// tools counted individually in Snapshot.ToolCalls.
var countedTools = [...]string{"echo", "stream", "push", "notify", "other"}

func toolIndex(name string) int {
	for i, t := range countedTools[:len(countedTools)-1] {
		if t == name {
			return i
		}
	}
	return len(countedTools) - 1
}

// stats holds the server's counters. All fields are atomics.
type stats struct {
	sessionsCreated   atomic.Int64
	sessionsDeleted   atomic.Int64
	sessionsActive    atomic.Int64
	sessionsRefused   atomic.Int64
	methods           [len(countedMethods)]atomic.Int64
	tools             [len(countedTools)]atomic.Int64
	progress          atomic.Int64
	push              atomic.Int64
	listChanged       atomic.Int64
	resultSSE         atomic.Int64
	resultJSON        atomic.Int64
	injectedLoss      atomic.Int64
	injectedDup       atomic.Int64
	evictedUnread     atomic.Int64
	getStreams        atomic.Int64
	postStreams       atomic.Int64
	resumes           atomic.Int64
	resumesRefused    atomic.Int64
	takeovers         atomic.Int64
	statelessRequests atomic.Int64
	httpErrors        atomic.Int64
}

// Snapshot is the JSON document served on GET /stats. Every count is cumulative since
// the server started.
type Snapshot struct {
	SessionsCreated int64 `json:"sessions_created"`
	SessionsDeleted int64 `json:"sessions_deleted"`
	SessionsActive  int64 `json:"sessions_active"`
	// SessionsRefused counts initialize calls refused by MaxSessions.
	SessionsRefused int64 `json:"sessions_refused"`
	// Requests counts JSON-RPC messages received by method (notifications included).
	Requests map[string]int64 `json:"requests"`
	// ToolCalls counts tools/call requests by tool name.
	ToolCalls map[string]int64 `json:"tool_calls"`
	// Events counts events sent by kind (see KindProgress and friends). Injected
	// duplicates are counted; injected losses are not.
	Events map[string]int64 `json:"events"`
	// InjectedLoss and InjectedDup count the notifications skipped or doubled on purpose.
	InjectedLoss int64 `json:"injected_loss"`
	InjectedDup  int64 `json:"injected_dup"`
	// EvictedUnread counts GET-stream events evicted before any reader took them.
	EvictedUnread int64 `json:"evicted_unread"`
	// GetStreams and PostStreams count SSE streams opened (resumes included).
	GetStreams  int64 `json:"get_streams"`
	PostStreams int64 `json:"post_streams"`
	// Resumes counts GETs with Last-Event-ID served; ResumesRefused those answered 400.
	Resumes        int64 `json:"resumes"`
	ResumesRefused int64 `json:"resumes_refused"`
	// Takeovers counts streams taken over from a previous reader.
	Takeovers int64 `json:"takeovers"`
	// StatelessRequests counts 2026-07-28 requests.
	StatelessRequests int64 `json:"stateless_requests"`
	// HTTPErrors counts answers with a 4xx or 5xx status.
	HTTPErrors int64 `json:"http_errors"`
}

func (s *stats) snapshot() Snapshot {
	snap := Snapshot{
		SessionsCreated:   s.sessionsCreated.Load(),
		SessionsDeleted:   s.sessionsDeleted.Load(),
		SessionsActive:    s.sessionsActive.Load(),
		SessionsRefused:   s.sessionsRefused.Load(),
		Requests:          make(map[string]int64, len(countedMethods)),
		ToolCalls:         make(map[string]int64, len(countedTools)),
		InjectedLoss:      s.injectedLoss.Load(),
		InjectedDup:       s.injectedDup.Load(),
		EvictedUnread:     s.evictedUnread.Load(),
		GetStreams:        s.getStreams.Load(),
		PostStreams:       s.postStreams.Load(),
		Resumes:           s.resumes.Load(),
		ResumesRefused:    s.resumesRefused.Load(),
		Takeovers:         s.takeovers.Load(),
		StatelessRequests: s.statelessRequests.Load(),
		HTTPErrors:        s.httpErrors.Load(),
		Events: map[string]int64{
			KindProgress:    s.progress.Load(),
			KindPush:        s.push.Load(),
			KindListChanged: s.listChanged.Load(),
			KindResultSSE:   s.resultSSE.Load(),
			KindResultJSON:  s.resultJSON.Load(),
		},
	}
	for i, m := range countedMethods {
		snap.Requests[m] = s.methods[i].Load()
	}
	for i, t := range countedTools {
		snap.ToolCalls[t] = s.tools[i].Load()
	}
	return snap
}
