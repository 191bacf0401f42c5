package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestREADMEFlagsExist: every flag loadtest/README.md names (before its
// "## Tests" section, whose flags are go test's) is a flag of one of the
// subcommands, as their -h lists them: a renamed or removed flag cannot
// stay documented.
func TestREADMEFlagsExist(t *testing.T) {
	have := map[string]bool{}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`)
	for _, sub := range []string{"run", "upstream", "relay", "httpproxy"} {
		var out bytes.Buffer
		require.Equal(t, 0, realMain([]string{sub, "-h"}, &out, &out), sub)
		for _, m := range flagLine.FindAllStringSubmatch(out.String(), -1) {
			have[m[1]] = true
		}
	}
	require.NotEmpty(t, have)
	have["h"] = true // the flag package's own help
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	doc, _, _ := strings.Cut(string(b), "\n## Tests\n")
	mentioned := regexp.MustCompile("(?:^|[\\s`(])-([a-z][a-z0-9-]*)").FindAllStringSubmatch(doc, -1)
	require.NotEmpty(t, mentioned)
	for _, m := range mentioned {
		assert.True(t, have[m[1]], "loadtest/README.md names -%s, which no subcommand has", m[1])
	}
}
