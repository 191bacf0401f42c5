package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestUsage(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"no subcommand", nil, 2, []string{"Usage: loadtest <subcommand>", "relay", "httpproxy"}},
		{"unknown", []string{"nope"}, 2, []string{`unknown subcommand "nope"`}},
		{"run help", []string{"run", "-h"}, 0, []string{"-target", "-scenario", "-sessions", "-streams", "-rate", "-duration",
			"-warmup", "-source-addrs", "-out", "-report", "-max-errors", "-max-loss", "resume:", "soak:"}},
		{"upstream help", []string{"upstream", "-h"}, 0, []string{"-listen", "-inject-loss-every", "-inject-dup-every", "-push-rate", "listening on http://<host:port>/mcp"}},
		{"run without target", []string{"run"}, 2, []string{"-target is required"}},
		{"relay help", []string{"relay", "-h"}, 0, []string{"-to", "-listen", "-buffer", "no splice", "listening on http://<host:port><path>"}},
		{"relay without to", []string{"relay"}, 2, []string{"-to is required"}},
		{"httpproxy help", []string{"httpproxy", "-h"}, 0, []string{"-to", "-listen", "fasthttp", "listening on http://<host:port><path>"}},
		{"httpproxy without to", []string{"httpproxy"}, 2, []string{"-to is required"}},
		{"relay small buffer", []string{"relay", "-to", "127.0.0.1:1", "-buffer", "10"}, 2, []string{"between 512 and 1048576"}},
		{"relay huge buffer", []string{"relay", "-to", "127.0.0.1:1", "-buffer", "1073741824"}, 2, []string{"between 512 and 1048576"}},
		{"bad chart format", []string{"run", "-target", "http://127.0.0.1:1/mcp", "-chart-format", "gif"}, 2, []string{"svg or png"}},
		{"bad scenario", []string{"run", "-target", "http://127.0.0.1:1/mcp", "-scenario", "nope", "-quiet"}, 2, []string{"unknown scenario"}},
		{"bad era", []string{"upstream", "-era", "nope"}, 2, []string{"bad config"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := realMain(tt.args, &stdout, &stderr)
			assert.Equal(t, tt.code, code)
			out := stdout.String() + stderr.String()
			for _, want := range tt.contains {
				assert.Contains(t, out, want)
			}
		})
	}
}

func TestLineWriter(t *testing.T) {
	var b bytes.Buffer
	w := progressOutput(&b)
	_, _ = w.Write([]byte("\r[ 1s/ 3s] post call 10/s   "))
	_, _ = w.Write([]byte("\n"))
	_, _ = w.Write([]byte("\r[ 2s/ 3s] post call 11/s   "))
	assert.Equal(t, "[ 1s/ 3s] post call 10/s\n[ 2s/ 3s] post call 11/s\n", b.String())
	assert.Equal(t, 2, strings.Count(b.String(), "\n"))
}
