package benchmarks

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// costTable runs cost_table.sh on a results directory holding runs (runs.tsv lines
// without the header) and returns its rows by figure (the text before the first comma).
func costTable(t *testing.T, runs []string) map[string]map[string]string {
	t.Helper()
	for _, tool := range []string{"bash", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	dir := t.TempDir()
	tsv := "section\ttarget\tround\tparam\tmetric\tvalue\n" + strings.Join(runs, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "runs.tsv"), []byte(tsv), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "env.txt"), []byte("commit: test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "./cost_table.sh", dir).CombinedOutput(); err != nil {
		t.Fatalf("cost_table.sh: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "table.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]string
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	byFigure := make(map[string]map[string]string)
	for _, r := range rows {
		key, _, _ := strings.Cut(r["figure"], ",")
		byFigure[key] = r
	}
	return byFigure
}

// tsv joins one runs.tsv line.
func tsv(fields ...string) string { return strings.Join(fields, "\t") }

// TestCostTablePairedRatio: a ratio row is the median of the per-round ratios, not the
// ratio of the medians (here 0.5 against 0.25).
func TestCostTablePairedRatio(t *testing.T) {
	var runs []string
	for r, cpu := range [][2]string{{"1.0", "2.0"}, {"3.0", "4.0"}, {"1.0", "10.0"}} {
		round := string(rune('1' + r))
		runs = append(runs,
			tsv("everything", "mcpgate", round, "c16", "proxy_cpu_s", cpu[0]),
			tsv("everything", "mcpgate", round, "c16", "requests", "10000"),
			tsv("everything", "caddy", round, "c16", "proxy_cpu_s", cpu[1]),
			tsv("everything", "caddy", round, "c16", "requests", "10000"))
	}
	row := costTable(t, runs)["gateway CPU per `tools/call` on the reference server (SSE answers) / Caddy's CPU per call"]
	if !strings.HasPrefix(row["measured"], "0.5 (100 vs 400 µs)") || row["verdict"] != "missed" {
		t.Errorf("row %q, verdict %q; want 0.5 (100 vs 400 µs), missed", row["measured"], row["verdict"])
	}
}

// churnFig is the churn row's key in costTable's result.
const churnFig = "session churn (initialize + call + DELETE) through mcpgate / direct"

// TestCostTableChurnNoneHeld: a target that held no churn rate at all was measured and
// missed (0/s); the row must not read "not measured", which keeps the README's old row.
func TestCostTableChurnNoneHeld(t *testing.T) {
	var runs []string
	for _, p := range []string{"r500", "r1000"} {
		runs = append(runs,
			tsv("churn", "mcpgate", "median", p, "holds", "0"),
			tsv("churn", "relay", "median", p, "holds", "0"),
			tsv("churn", "direct", "median", p, "holds", "1"))
	}
	runs = append(runs, tsv("churn", "direct", "median", "r1500", "holds", "0"))
	row := costTable(t, runs)[churnFig]
	if !strings.HasPrefix(row["measured"], "0 (0/s vs 1000/s)") || !strings.HasPrefix(row["verdict"], "missed") {
		t.Errorf("row %q, verdict %q; want 0 (0/s vs 1000/s), missed", row["measured"], row["verdict"])
	}
}

// TestCostTableChurnDirectCapped: when direct held every churn rate tried, its highest is
// where the list of rates ended, so the ratio is only an upper bound: the row says so and
// is never met, however high the bound.
func TestCostTableChurnDirectCapped(t *testing.T) {
	var runs []string
	for _, p := range []string{"r1000", "r2000"} {
		runs = append(runs,
			tsv("churn", "mcpgate", "median", p, "holds", "1"),
			tsv("churn", "direct", "median", p, "holds", "1"))
	}
	row := costTable(t, runs)[churnFig]
	if row["measured"] != "at most 1 (2000/s vs ≥ 2000/s: direct held every rate tried)" || row["verdict"] != "missed" {
		t.Errorf("row %q, verdict %q; want an upper bound, missed", row["measured"], row["verdict"])
	}
	runs = append(runs, tsv("churn", "mcpgate", "median", "r3000", "holds", "0"), tsv("churn", "direct", "median", "r3000", "holds", "0"))
	row = costTable(t, runs)[churnFig]
	if row["measured"] != "1 (2000/s vs 2000/s)" || row["verdict"] != "met" {
		t.Errorf("row %q, verdict %q; want 1 (2000/s vs 2000/s), met", row["measured"], row["verdict"])
	}
}

// TestCostTableEventsPerDelivered: the events row is the gateway's CPU per delivered
// event over the mock's per pushed event; with a fifth of the events lost the CPU
// ratio 0.9 is 1.125 per delivered event.
func TestCostTableEventsPerDelivered(t *testing.T) {
	var runs []string
	for _, round := range []string{"1", "2", "3"} {
		runs = append(runs,
			tsv("events", "mcpgate", round, "r10000", "proxy_cpu_s", "9.0"),
			tsv("events", "mcpgate", round, "r10000", "upstream_cpu_s", "10.0"),
			tsv("events", "mcpgate", round, "r10000", "pushed", "230000"),
			tsv("events", "mcpgate", round, "r10000", "lost", "46000"),
			tsv("events", "mcpgate", round, "r10000", "streams", "1000"))
	}
	row := costTable(t, runs)["gateway CPU per delivered event / the mock's CPU per pushed event"]
	if !strings.HasPrefix(row["measured"], "1.13 ") || row["verdict"] != "missed" {
		t.Errorf("row %q, verdict %q; want 1.13, missed", row["measured"], row["verdict"])
	}
}

// TestCostTableFloors: a row gives the byte relay's and the plain HTTP proxy's figures
// of the same run; a missed row that the relay meets but the HTTP proxy misses says
// that the HTTP proxy misses too, and one the relay misses too names the relay.
func TestCostTableFloors(t *testing.T) {
	churn := func(relayHolds string) []string {
		var runs []string
		for _, p := range []string{"r1000", "r2000"} {
			hp := "1"
			if p == "r2000" {
				hp = "0"
			}
			runs = append(runs,
				tsv("churn", "mcpgate", "median", p, "holds", map[string]string{"r1000": "1", "r2000": "0"}[p]),
				tsv("churn", "relay", "median", p, "holds", relayHolds),
				tsv("churn", "httpproxy", "median", p, "holds", hp),
				tsv("churn", "direct", "median", p, "holds", "1"))
		}
		return append(runs, tsv("churn", "direct", "median", "r4000", "holds", "0"))
	}
	row := costTable(t, churn("1"))[churnFig]
	if row["measured"] != "0.5 (1000/s vs 2000/s); byte relay: 1 (2000/s); plain HTTP proxy: 0.5 (1000/s)" ||
		row["verdict"] != "missed (a plain HTTP proxy on fasthttp misses too)" {
		t.Errorf("row %q, verdict %q", row["measured"], row["verdict"])
	}
	row = costTable(t, churn("0"))[churnFig]
	if row["verdict"] != "missed (a byte relay misses too)" {
		t.Errorf("relay missing too: verdict %q", row["verdict"])
	}
}
