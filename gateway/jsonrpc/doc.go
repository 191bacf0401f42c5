// Package jsonrpc reads what the gateway needs for routing from JSON-RPC 2.0 messages
// (kind, id, method, progress token, batch) without decoding params or results, and
// writes JSON-RPC error responses.
//
// Parsing is done by a hand-written scanner that fully validates the JSON syntax of the
// input (with the same acceptance as encoding/json.Valid, including its nesting limit of
// 10000, or a lower one with ParseLimited) while extracting only the top-level envelope
// fields. It was chosen over github.com/valyala/fastjson with a reused parser and over
// encoding/json by measurement; the comparison is BenchmarkParse in bench_test.go, where
// the losing candidates live.
// On the 2-core reference machine (go1.26, -benchtime 0.5s -count 2, a shared and noisy
// host), best of two runs, ns/op / allocs/op:
//
//	body (bytes)            scanner    fastjson   fastjson+Validate   encoding/json
//	tools/call (246)        683 / 0    1076 / 0   1743 / 0            14729 / 29
//	response (256)          467 / 0     931 / 0   1637 / 0            10201 / 13
//	progress notif. (145)   304 / 0     522 / 0   1203 / 0            10441 / 22
//
// fastjson alone checks string contents lazily and accepts some invalid JSON, so only the
// validated variant meets Parse's contract; the scanner is about 2.5x faster than it. The
// scanner also keeps the package free of third-party imports.
//
// Concurrency: a Parser is NOT safe for concurrent use; callers keep one per goroutine or
// pool them (sync.Pool). The messages Parse returns, and every slice in them, alias the
// input and the Parser's buffers and stay valid only until the next Parse on the same
// Parser (and only while the input is not modified). The package-level functions
// (Lookup, Unquote, AppendError, AppendString) and Kind and Error methods are safe for
// concurrent use. Nothing in the package blocks or starts goroutines.
package jsonrpc
