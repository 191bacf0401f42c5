package sse

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"testing"
)

// referenceDecode is a deliberately simple, spec-literal decoder over a whole input, used
// to cross-check Decoder: strip one leading BOM, split into lines at CRLF, LF or CR (an
// unterminated last line is dropped), then apply the WHATWG field rules with this
// package's block rules (a block is returned when it has an effective field).
func referenceDecode(in []byte) (events []copied, comments int) {
	in = bytes.TrimPrefix(in, bom)
	var lines [][]byte
	for len(in) > 0 {
		i := bytes.IndexAny(in, "\r\n")
		if i < 0 {
			break
		}
		lines = append(lines, in[:i])
		if in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n' {
			i++
		}
		in = in[i+1:]
	}
	var (
		data                      []byte
		evType, id                string
		hasID, hasEv, hasData, cm bool
		retry                     int64 = -1
	)
	for _, line := range lines {
		if len(line) == 0 {
			if hasID || hasEv || hasData || retry >= 0 {
				ev := copied{HasID: hasID, HasData: hasData, Retry: retry, Event: evType}
				if hasID {
					ev.ID = id
				}
				if hasData {
					ev.Data = string(data[:len(data)-1])
				}
				events = append(events, ev)
			} else if cm {
				comments++
			}
			data, evType, id = nil, "", ""
			hasID, hasEv, hasData, cm, retry = false, false, false, false, -1
			continue
		}
		if line[0] == ':' {
			cm = true
			continue
		}
		name, value, found := bytes.Cut(line, []byte(":"))
		if found && len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		switch string(name) {
		case "data":
			data = append(append(data, value...), '\n')
			hasData = true
		case "event":
			evType, hasEv = string(value), true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				id, hasID = string(value), true
			}
		case "retry":
			allDigits := len(value) > 0
			for _, c := range value {
				allDigits = allDigits && c >= '0' && c <= '9'
			}
			if n, err := strconv.ParseInt(string(value), 10, 64); allDigits && err == nil {
				retry = n
			}
		}
	}
	return events, comments
}

func FuzzDecoderReference(f *testing.F) {
	f.Add([]byte("id: 1_1\ndata: hello\n\n"))
	f.Add([]byte("\xEF\xBB\xBFdata: a\r\ndata: b\r\r: c\n\nretry: 10\nevent: x\n\n"))
	f.Add([]byte("data\nid\x00\nretry: 1 \n\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, d, err := decodeAll(bytes.NewReader(in), 0)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("error: %v", err)
		}
		want, comments := referenceDecode(in)
		if len(got) != len(want) {
			t.Fatalf("got %d events, reference %d\n%+v\n%+v", len(got), len(want), got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("event %d:\ngot       %+v\nreference %+v", i, got[i], want[i])
			}
		}
		if d.Comments() != comments {
			t.Fatalf("comments %d, reference %d", d.Comments(), comments)
		}
		// The same input in small reads, each after a wait for input (an
		// InputWaiter: the decoder reads into a pooled buffer when woken).
		step := 1 + len(in)%7
		got, _, err = decodeAll(&wakingBytes{r: bytes.NewReader(in), step: step}, 0)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("error (waking reader): %v", err)
		}
		if len(got) != len(want) {
			t.Fatalf("waking reader: got %d events, reference %d", len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("waking reader, event %d:\ngot       %+v\nreference %+v", i, got[i], want[i])
			}
		}
	})
}

// wakingBytes reads r at most step bytes at a time, as an InputWaiter
// whose input is always there.
type wakingBytes struct {
	r    *bytes.Reader
	step int
}

func (w *wakingBytes) Read(p []byte) (int, error) { return w.r.Read(p[:min(len(p), w.step)]) }
func (w *wakingBytes) WaitReadable() error        { return nil }
func (w *wakingBytes) WaitsForInput() bool        { return true }
