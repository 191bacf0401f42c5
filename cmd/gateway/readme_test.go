package main

import (
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	readmeFlagName = regexp.MustCompile("`-([a-z0-9-]+)`")
	// readmeLiteral is a default given as a literal: `value`, perhaps
	// followed by a gloss in parentheses, as in "`0` (no limit)".
	readmeLiteral = regexp.MustCompile("^`([^`]*)`(?: \\([^)]*\\))?$")
)

// TestREADMEDocumentsEveryFlag: the README's flag table (section "### Flags")
// has a row for every flag of the command and for no other, and its
// default column agrees with the flag's default: a literal default
// (`30m`, `1MiB`, `0` (off)) must set the flag to its default value; a
// default in words (none, off, "loopback origins when ...") must belong to
// a flag whose own default is empty or zero.
func TestREADMEDocumentsEveryFlag(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	_, sec, ok := strings.Cut(string(b), "\n### Flags\n")
	require.True(t, ok, "README.md has a ### Flags section")
	sec, _, _ = strings.Cut(sec, "\n### ")

	fs := newFlagSet(&options{}, io.Discard)
	documented := map[string]bool{}
	for _, line := range strings.Split(sec, "\n") {
		if !strings.HasPrefix(line, "| `-") {
			continue
		}
		cells := strings.Split(line, " | ")
		require.GreaterOrEqual(t, len(cells), 3, "a row of flag, default and meaning: %s", line)
		def := strings.TrimSpace(cells[1])
		for _, m := range readmeFlagName.FindAllStringSubmatch(cells[0], -1) {
			name := m[1]
			assert.False(t, documented[name], "-%s is listed twice", name)
			documented[name] = true
			f := fs.Lookup(name)
			if !assert.NotNil(t, f, "the README lists -%s, which the command does not have", name) {
				continue
			}
			if lit := readmeLiteral.FindStringSubmatch(def); lit != nil {
				fresh := newFlagSet(&options{}, io.Discard)
				if assert.NoError(t, fresh.Set(name, lit[1]), "-%s's README default %q", name, lit[1]) {
					assert.Equal(t, f.DefValue, fresh.Lookup(name).Value.String(),
						"-%s: the README's default %q is not the flag's %q", name, lit[1], f.DefValue)
				}
				continue
			}
			assert.Contains(t, []string{"", "0", "0s", "false", "[]"}, f.DefValue,
				"-%s: the README gives its default in words (%q) but the flag's is %q", name, def, f.DefValue)
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		assert.True(t, documented[f.Name], "-%s is not in the README's flag table", f.Name)
	})
}
