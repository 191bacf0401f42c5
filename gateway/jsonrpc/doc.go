// Package jsonrpc reads what the gateway needs for routing from JSON-RPC 2.0 messages
// (kind, id, method, progress token, batch) without decoding params or results, and
// writes JSON-RPC error responses.
//
// Parsing is done by a hand-written scanner that fully validates the JSON syntax of the
// input (with the same acceptance as encoding/json.Valid, including its nesting limit of
// 10000) while extracting only the top-level envelope fields. It was chosen over
// github.com/valyala/fastjson with a reused parser and over encoding/json by measurement;
// the comparison is BenchmarkParse in bench_test.go, where the losing candidates live.
// On the 2-core reference machine (go1.26, -benchtime 0.5s, a shared and noisy host) a
// typical 260-byte tools/call request took: scanner ~0.8 µs and 0 allocs; fastjson
// ~1.15 µs and 0 allocs, ~1.7 µs with fastjson.ValidateBytes (needed, because fastjson's
// parser checks string contents lazily and accepts some invalid JSON); encoding/json
// ~17 µs and 29 allocs. Responses and progress notifications rank the same way. The
// scanner also keeps the package free of third-party imports.
//
// Concurrency: a Parser is NOT safe for concurrent use; callers keep one per goroutine or
// pool them (sync.Pool). The messages Parse returns, and every slice in them, alias the
// input and the Parser's buffers and stay valid only until the next Parse on the same
// Parser (and only while the input is not modified). The package-level functions
// (Lookup, Unquote, AppendError, AppendString) and Kind and Error methods are safe for
// concurrent use. Nothing in the package blocks or starts goroutines.
package jsonrpc
