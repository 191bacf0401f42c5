// Package sessionrec encodes mcpgate's session records: what a gateway
// needs to carry a client session across its own restart (and, for the
// scale-out work, to another node through a key-value registry).
//
// It has two layers, kept apart so each can be reused alone:
//
//   - the record encoding (AppendRecord, DecodeRecord): one Record as a
//     self-contained binary value that starts with its format version. A
//     key-value registry stores one per session. Fields are tagged (a field
//     number and a wire type, as in protocol buffers), so a decoder skips
//     fields it does not know: a newer writer's records stay readable by an
//     older reader of the same record version.
//   - the state file framing (Writer, ReadFile): a header naming the format
//     and its version, one frame per record (length, record, CRC-32C), and
//     a trailer (the record count and a CRC-32C of every byte before it).
//     ReadFile checks everything before it returns anything, so a file that
//     is truncated, corrupt, of another version or not a state file at all
//     is refused whole (a *FileError saying what and where), never read in
//     part.
//
// A Record holds session identity (id, principal, protocol version, times),
// the upstream binding (kind, the upstream's session id and version, whether
// it can be re-attached), what re-initializing an upstream session takes
// (the cached initialize request, the negotiated capabilities, the log level
// and resource subscriptions to replay), the session's id counters and each
// stream with its retained events and their sequence numbers. It knows
// nothing of the gateway's types: the gateway converts.
//
// Records carry session ids, which let anyone holding them continue the
// session: store the file like a credential (the gateway writes it 0600).
//
// The package is stdlib only, starts no goroutines and has no state; every
// function is safe for concurrent use on distinct values.
package sessionrec
