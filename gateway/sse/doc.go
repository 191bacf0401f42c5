// Package sse encodes and decodes Server-Sent Events (the WHATWG "text/event-stream"
// format) for the gateway.
//
// The encoder side is a set of append-style functions (AppendStreamEvent, AppendEvent,
// AppendComment, AppendRetry, AppendEventID) that write into a caller-supplied buffer and
// allocate nothing when the buffer has room. They are pure functions and safe for
// concurrent use.
//
// The decoder side is Decoder, an incremental parser for upstream event streams. A Decoder
// is NOT safe for concurrent use: one goroutine (the one reading the upstream stream) owns
// it. It starts no goroutines. Next blocks only inside the underlying io.Reader's Read.
// The Event returned by Next and every slice in it are owned by the Decoder and stay valid
// only until the next call to Next; copy what must outlive it. In steady state Next
// allocates nothing: its buffers grow to the largest event seen (bounded by the configured
// maximum event size) and are then reused.
//
// Event IDs minted by the gateway have the form "<stream>_<seq>" (two decimal uint64
// values); ParseEventID is their strict inverse and is meant for untrusted Last-Event-ID
// headers.
package sse
