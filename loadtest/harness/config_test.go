package harness

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

func TestConfigDefaults(t *testing.T) {
	c, err := Config{Target: "http://127.0.0.1:1/mcp"}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, DefaultScenario, c.Scenario)
	assert.Equal(t, DefaultSessions, c.Sessions)
	assert.Equal(t, float64(DefaultRate), c.Rate)
	assert.Equal(t, DefaultDuration, c.Duration)
	assert.Equal(t, DefaultWarmup, c.Warmup)
	assert.Equal(t, DefaultConns, c.Conns)
	assert.Equal(t, DefaultVersion, c.Version)
	assert.Equal(t, DefaultMaxErrorRate, c.MaxErrorRate)
	assert.Equal(t, 0.0, c.MaxLossRate)
	assert.Equal(t, 0, c.Streams)

	c, err = Config{Target: "x", Warmup: -1, Streams: -1, Sessions: 3}.withDefaults()
	require.NoError(t, err)
	assert.Equal(t, 0*c.Warmup, c.Warmup)
	assert.Equal(t, 3, c.Streams, "negative streams means every session")
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no target", Config{}},
		{"unknown scenario", Config{Target: "x", Scenario: "nope"}},
		{"negative rate", Config{Target: "x", Rate: -1}},
		{"slow fraction 1", Config{Target: "x", SlowFraction: 1}},
		{"burst over 1024", Config{Target: "x", Burst: 1025}},
		{"negative burst", Config{Target: "x", Burst: -1}},
		{"stateless stream", Config{Target: "x", Scenario: ScenarioStream, Version: "2026-07-28"}},
		{"stateless streams", Config{Target: "x", Streams: 1, Version: "2026-07-28"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.withDefaults()
			assert.ErrorIs(t, err, ErrBadConfig)
		})
	}
}

func TestNewClientInvalid(t *testing.T) {
	for _, cfg := range []ClientConfig{
		{Target: "https://127.0.0.1/mcp"},
		{Target: "127.0.0.1:80"},
		{Target: "http://127.0.0.1/mcp", SourceAddrs: []string{"not-an-ip"}},
	} {
		_, err := NewClient(cfg)
		assert.ErrorIs(t, err, ErrBadConfig, "%+v", cfg)
	}
}

func TestErrorKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, ""},
		{&HTTPError{Op: "post", Status: 404}, "http_404"},
		{fmt.Errorf("wrapped: %w", &HTTPError{Status: 503}), "http_503"},
		{&RPCError{Code: -32601}, "rpc_-32601"},
		{ErrStreamEnded, "stream_ended"},
		{fmt.Errorf("x: %w", ErrProtocol), "protocol"},
		{fasthttp.ErrNoFreeConns, "no_free_conns"},
		{fasthttp.ErrTimeout, "timeout"},
		{&net.OpError{Op: "dial", Err: errors.New("refused")}, "connect"},
		{&net.OpError{Op: "read", Err: errors.New("reset")}, "conn_closed"},
		{io.ErrUnexpectedEOF, "conn_closed"},
		{errors.New("something"), "other"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, ErrorKind(tt.err), "%v", tt.err)
	}
}

func TestCheckSockets(t *testing.T) {
	ok := Config{Target: "x", Scenario: ScenarioStream, Sessions: 10, Conns: 4}
	assert.NoError(t, checkSockets(ok))
	huge := Config{Target: "x", Scenario: ScenarioResume, Sessions: 1 << 30, Conns: 4}
	assert.ErrorIs(t, checkSockets(huge), ErrBadConfig)
	assert.Equal(t, 4+2*10, socketsNeeded(Config{Scenario: ScenarioResume, Sessions: 10, Conns: 4}))
	assert.Equal(t, 8+10+1, socketsNeeded(Config{Scenario: ScenarioSoak, Sessions: 10, Conns: 8}))
	assert.Equal(t, 8+3, socketsNeeded(Config{Scenario: ScenarioPost, Sessions: 10, Streams: 3, Conns: 8}))
}
