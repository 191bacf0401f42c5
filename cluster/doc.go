// Package cluster runs several mcpgate nodes as one gateway on NATS
// JetStream, so that any node serves any session and a load balancer
// needs no stickiness. It is a sibling of package gateway, never imported
// by it: gateway declares the small interface it needs (gateway.Cluster)
// and cmd/gateway passes a *Node in.
//
// What lives in NATS (all created or verified by Open, idempotently, with
// Config.Replicas replicas):
//
//   - the session registry, a key-value bucket <prefix>-sessions: one
//     entry per session, keyed by its Mcp-Session-Id, holding the owner
//     node, the writer node, the last activity and the session record of
//     the restart work (package gateway/sessionrec, without stream
//     events). The bucket's TTL is the session idle timeout plus slack, so
//     a session idle on every node (or whose nodes all died) leaves the
//     bucket on its own. Beside each entry, keys <session>.m0 (where the
//     standalone stream's newest connection started: SetMark) and
//     <session>.h0 (the highest seq given out in the standalone stream and
//     its highest must-deliver seq: SetHigh, written by the owner, so that
//     the stream's numbering outlives its events' MaxAge).
//   - node leases, a key-value bucket <prefix>-nodes with a TTL of
//     Config.LeaseTTL: each node refreshes its key (and the 20-bit tag it
//     claimed, which makes its stream and call numbers unique in a
//     session) every third of it. A session's owner holds its lease while
//     its node key exists; a node that dies loses it when the key expires,
//     and another node may then claim the session (SaveSession with the
//     revision it read).
//   - stream events, a stream <PREFIX>_EVENTS on subjects
//     <prefix>.ev.<session>.<stream>, with MaxMsgsPerSubject equal to the
//     ring's size (plus the end marker), MaxMsgSize the ring's hard byte
//     limit and MaxAge the stream retention: the ring, distributed.
//   - node-to-node requests on <prefix>.node.<node id>.<op> (NATS
//     request/reply), answered by the function given to Handle.
//
// Concurrency contract: every method of Node is safe for concurrent use.
// Publish never waits for JetStream: its done functions are called in
// publishing order on the Node's acknowledgement goroutine and must not
// block. Follow blocks its caller until its context ends, the stream ends
// or JetStream fails. The Node owns its goroutines (lease refresh, registry
// watch, acknowledgements, request handlers); Close stops them and waits.
package cluster
