package jsonrpc

import (
	"encoding/binary"
	"math/bits"
)

// The scanner: small functions over (data, offset) that validate JSON exactly as
// encoding/json.Valid does and return the offset just past what they scanned, or ok=false
// on a syntax error.

// maxDepth is encoding/json's nesting limit: 10000 nested arrays/objects are valid, 10001
// are not.
const maxDepth = 10000

// strSafe[c] is true for bytes that may appear unescaped in a JSON string and need no
// attention from the scanner.
var strSafe = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = true
	}
	t['"'] = false
	t['\\'] = false
	return t
}()

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specialMask flags, in the top bit of each byte, the bytes of w (little-endian) that are
// '"', '\\' or below 0x20 (bytes >= 0x80 are never flagged). It is non-zero exactly when
// one is there, and its lowest flag marks the first one: the classic "has zero byte" and
// "has byte less than n" tests can only err in bytes above a byte that really matches.
func specialMask(w uint64) uint64 {
	quote := w ^ (lsb * '"')
	bslash := w ^ (lsb * '\\')
	ctl := (w - lsb*0x20) & ^w
	return ((quote-lsb)&^quote | (bslash-lsb)&^bslash | ctl) & msb
}

func isWS(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

func skipWS(data []byte, i int) int {
	for i < len(data) && isWS(data[i]) {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// scanString scans the string literal starting at data[i] == '"'. esc reports whether it
// contains escapes.
func scanString(data []byte, i int) (end int, esc bool, ok bool) {
	i++
	for {
		// Go to the next byte that needs attention, 8 at a time while 8 are left
		// (most strings, keys included, end within the first 8), then byte by byte.
		if i+8 <= len(data) {
			m := specialMask(binary.LittleEndian.Uint64(data[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		} else {
			for i < len(data) && strSafe[data[i]] {
				i++
			}
			if i >= len(data) {
				return i, esc, false
			}
		}
		switch data[i] {
		case '"':
			return i + 1, esc, true
		case '\\':
			esc = true
			if i+1 >= len(data) {
				return i, esc, false
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex(data[i+2]) || !isHex(data[i+3]) || !isHex(data[i+4]) || !isHex(data[i+5]) {
					return i, esc, false
				}
				i += 6
			default:
				return i, esc, false
			}
		default: // control character
			return i, esc, false
		}
	}
}

// scanNumber scans a JSON number starting at data[i]. isInt reports that it has neither
// a fraction nor an exponent.
func scanNumber(data []byte, i int) (end int, isInt bool, ok bool) {
	if data[i] == '-' {
		i++
	}
	if i >= len(data) {
		return i, false, false
	}
	switch c := data[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		i++
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
	default:
		return i, false, false
	}
	isInt = true
	if i < len(data) && data[i] == '.' {
		isInt = false
		i++
		start := i
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
		if i == start {
			return i, false, false
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		isInt = false
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		start := i
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
		}
		if i == start {
			return i, false, false
		}
	}
	return i, isInt, true
}

func scanLiteral(data []byte, i int, lit string) (int, bool) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// skipValue scans the value starting at data[i] (no leading whitespace). depth is the
// number of arrays/objects enclosing it.
func skipValue(data []byte, i, depth int) (int, bool) {
	if i >= len(data) {
		return i, false
	}
	switch c := data[i]; c {
	case '"':
		end, _, ok := scanString(data, i)
		return end, ok
	case '{':
		return skipObject(data, i, depth+1)
	case '[':
		return skipArray(data, i, depth+1)
	case 't':
		return scanLiteral(data, i, "true")
	case 'f':
		return scanLiteral(data, i, "false")
	case 'n':
		return scanLiteral(data, i, "null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			end, _, ok := scanNumber(data, i)
			return end, ok
		}
		return i, false
	}
}

// skipObject scans the object starting at data[i] == '{'; depth includes it.
func skipObject(data []byte, i, depth int) (int, bool) {
	if depth > maxDepth {
		return i, false
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return i, false
		}
		end, _, ok := scanString(data, i)
		if !ok {
			return end, false
		}
		i = skipWS(data, end)
		if i >= len(data) || data[i] != ':' {
			return i, false
		}
		i = skipWS(data, i+1)
		if i, ok = skipValue(data, i, depth); !ok {
			return i, false
		}
		i = skipWS(data, i)
		if i >= len(data) {
			return i, false
		}
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case '}':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// skipArray scans the array starting at data[i] == '['; depth includes it.
func skipArray(data []byte, i, depth int) (int, bool) {
	if depth > maxDepth {
		return i, false
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == ']' {
		return i + 1, true
	}
	for {
		var ok bool
		if i, ok = skipValue(data, i, depth); !ok {
			return i, false
		}
		i = skipWS(data, i)
		if i >= len(data) {
			return i, false
		}
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case ']':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// objectIter walks the members of one object. Use:
//
//	it := objectIter{data: data, i: start, depth: depth}
//	for it.next() { key := it.key; ...; it.skip() or it.i = end of value }
//	if !it.ok { syntax error at it.i }
//
// After next returns true, it.i is at the member's value (whitespace skipped) and the
// caller must advance it.i past the value before calling next again.
type objectIter struct {
	data  []byte
	i     int
	depth int // depth of the object itself
	ok    bool
	first bool
	done  bool

	key    []byte // key contents without quotes, still escaped when keyEsc
	keyEsc bool
}

// start positions the iterator on the object at data[i] == '{'.
func (it *objectIter) start(data []byte, i, depth int) {
	*it = objectIter{data: data, i: i + 1, depth: depth, ok: depth <= maxDepth, first: true}
}

// next advances to the next member. It returns false at the end of the object (ok stays
// true and i is just past '}') or on a syntax error (ok is false).
func (it *objectIter) next() bool {
	if !it.ok || it.done {
		return false
	}
	data := it.data
	i := skipWS(data, it.i)
	if i >= len(data) {
		return it.fail(i)
	}
	if it.first {
		it.first = false
		if data[i] == '}' {
			it.i, it.done = i+1, true
			return false
		}
	} else {
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case '}':
			it.i, it.done = i+1, true
			return false
		default:
			return it.fail(i)
		}
	}
	if i >= len(data) || data[i] != '"' {
		return it.fail(i)
	}
	end, esc, ok := scanString(data, i)
	if !ok {
		return it.fail(end)
	}
	it.key, it.keyEsc = data[i+1:end-1], esc
	i = skipWS(data, end)
	if i >= len(data) || data[i] != ':' {
		return it.fail(i)
	}
	it.i = skipWS(data, i+1)
	return true
}

func (it *objectIter) fail(i int) bool {
	it.i, it.ok = i, false
	return false
}

// skip skips the current member's value.
func (it *objectIter) skip() {
	it.i, it.ok = skipValue(it.data, it.i, it.depth)
}

// keyIs reports whether the current key equals name, decoding escapes into scratch if the
// key has any.
func (it *objectIter) keyIs(name string, scratch *[]byte) bool {
	if !it.keyEsc {
		return string(it.key) == name
	}
	*scratch = appendUnescaped((*scratch)[:0], it.key)
	return string(*scratch) == name
}

// Lookup returns the raw JSON value found by following path, a sequence of object keys,
// from the top-level value of data; for example Lookup(body, "params", "name"). With an
// empty path it returns the whole (trimmed) value. ok is false if a key is absent, a value
// on the way is not an object, or the JSON is malformed where Lookup reads it. With
// duplicate keys the last one wins, as in Parse and encoding/json. Lookup validates the
// objects it walks through and the value it returns, not the rest of the document; use it
// on bodies Parse has accepted. It allocates only to compare keys that contain escapes.
func Lookup(data []byte, path ...string) (raw []byte, ok bool) {
	i := skipWS(data, 0)
	depth := 0
	var scratch []byte
	for _, name := range path {
		if i >= len(data) || data[i] != '{' {
			return nil, false
		}
		depth++
		var it objectIter
		it.start(data, i, depth)
		found := -1
		for it.next() {
			if it.keyIs(name, &scratch) {
				found = it.i
			}
			it.skip()
		}
		if !it.ok || found < 0 {
			return nil, false
		}
		i = found
	}
	end, ok := skipValue(data, i, depth)
	if !ok {
		return nil, false
	}
	return data[i:end], true
}
