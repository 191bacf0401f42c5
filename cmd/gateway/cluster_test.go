package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestClusterFlagsNameTheFlag(t *testing.T) {
	up := []string{"-upstream", "http://127.0.0.1:1/mcp"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{append([]string{"-node-id", "a"}, up...), "-node-id needs -cluster"},
		{append([]string{"-cluster", "nats://127.0.0.1:1", "-state-file", "/tmp/x"}, up...), "-state-file and -cluster"},
		{append([]string{"-cluster", "nats://127.0.0.1:1", "-cluster-storage", "disk"}, up...), "-cluster-storage"},
		{append([]string{"-cluster", "nats://127.0.0.1:1", "-cluster-replicas", "0"}, up...), "-cluster-replicas"},
		{append([]string{"-cluster", "nats://127.0.0.1:1", "-cluster-lease", "100ms"}, up...), "-cluster-lease"},
		{append([]string{"-cluster", "nats://127.0.0.1:1", "-node-id", "bad id"}, up...), "node id"},
		// Nothing listens there: the error names the flag and the URL.
		{append([]string{"-cluster", "nats://127.0.0.1:1"}, up...), "-cluster: cluster: connect to nats://127.0.0.1:1"},
	} {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		assert.NotZero(t, code, "%v", c.args)
		assert.Contains(t, errb.String(), c.want, "%v", c.args)
	}
}

// TestClusterNeedsJetStream: a NATS server without JetStream is refused at
// start, saying so.
func TestClusterNeedsJetStream(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go ns.Start() // Shutdown stops it
	require.True(t, ns.ReadyForConnections(10*time.Second))
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	var out, errb bytes.Buffer
	code := run([]string{"-upstream", "http://127.0.0.1:1/mcp", "-cluster", ns.ClientURL()}, &out, &errb)
	assert.Equal(t, 2, code)
	assert.Contains(t, errb.String(), "JetStream is not enabled")
}

func TestHelpExplainsClusterFlags(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 0, run([]string{"-h"}, &out, &errb))
	for _, f := range []string{"-cluster", "-node-id", "-cluster-replicas", "-cluster-prefix", "-cluster-lease",
		"-cluster-storage", "-cluster-creds", "-cluster-nkey", "-cluster-user", "-cluster-password", "-cluster-token",
		"-cluster-tls-ca", "-cluster-tls-cert", "-cluster-tls-key", "JetStream"} {
		assert.Contains(t, errb.String(), f)
	}
}
