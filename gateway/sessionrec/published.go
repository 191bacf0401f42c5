package sessionrec

// Published is one event of a session's stream as a scale-out backend
// stores it for the other nodes (package cluster keeps them in a JetStream
// stream): the ring event itself, and what a node that did not produce it
// needs to serve a resume by Last-Event-ID exactly as the producer's ring
// would, or to take the stream over when the producer is gone.
type Published struct {
	Event
	// Stream is the session stream the event belongs to (0 standalone).
	Stream uint64
	// LastMust is the seq of the last must-deliver event before this one
	// (0 if none). A reader resuming after seq a whose next retained event
	// is this one has lost the events between: fine if they were all
	// droppable (LastMust <= a), a refused resume otherwise.
	LastMust uint64
	// UpstreamEventID is the upstream's SSE event id this event arrived
	// with ("" if none): where a node taking the stream over resumes it
	// upstream with Last-Event-ID.
	UpstreamEventID string
	// Calls are the calls answered on a POST answer stream, so that a node
	// taking the stream over maps the upstream's answer ids back to the
	// client's.
	Calls []Call
	// End marks the stream's end: no more events follow. It carries no
	// data; its Seq is the stream's last.
	End bool
}

// Call is one client request answered on a stream: the id it went upstream
// under, and the client's own id (raw JSON).
type Call struct {
	UpID     uint64
	ClientID []byte
}
