#!/usr/bin/env bash
# benchmarks/cost_table.sh DIR [--readme]: the cost table of issue 15 from one run of
# benchmarks/compare.sh (DIR = its results/compare-<UTC time>/ directory, which holds
# runs.tsv). Writes, next to runs.tsv:
#   results.json  every recorded figure: [{section, target, round, param, metric, value}]
#   table.json    the table's rows: [{figure, target, measured, verdict, command}]
#   table.md      the same as a Markdown table (also printed)
# Ratios and differences are medians of per-round paired values (the targets of one
# round run back to back; see compare.sh). A row whose section did not run says
# "not measured". Where the run measured the byte relay (compare.sh's RELAY=1), a row
# also gives the relay's figure: the floor any proxy in user space pays on the machine;
# a missed row whose floor misses too reads "missed (a byte relay misses too)". So for
# the plain HTTP proxy on fasthttp (loadtest httpproxy, run with the relay): what parsing
# and writing HTTP with mcpgate's library costs; a missed row it misses too (and the
# relay meets) reads "missed (a plain HTTP proxy on fasthttp misses too)".
#
# With --readme, the rows that were measured replace the rows of the same figure in
# README.md's cost table (between the cost-table markers); the others are kept, each
# row naming the run it comes from, so a partial run (ONLY=...) updates only its rows.
set -euo pipefail

cd "$(dirname "$0")/.."
DIR=${1:?usage: benchmarks/cost_table.sh results/compare-<time> [--readme]}
README_UPDATE=0
[[ ${2:-} == --readme ]] && README_UPDATE=1
[[ -s $DIR/runs.tsv ]] || { echo "cost_table.sh: $DIR/runs.tsv missing" >&2; exit 2; }
command -v jq >/dev/null || { echo "cost_table.sh: needs jq" >&2; exit 2; }

RUN="$(basename "$DIR" | sed 's/^compare-//') at $(sed -n 's/^commit: //p' "$DIR/env.txt" 2>/dev/null | head -n1)"

# runs.tsv -> results.json (numbers as numbers)
jq -R -s '
	split("\n") | .[1:] | map(select(length > 0) | split("\t") |
		{section: .[0], target: .[1], round: .[2], param: .[3], metric: .[4],
		 value: (.[5] as $v | try ($v | tonumber) catch $v)})' "$DIR/runs.tsv" >"$DIR/results.json"

jq --arg run "$RUN" '
	def med: map(select(. != null)) | sort |
		if length == 0 then null elif length % 2 == 1 then .[(length - 1) / 2] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
	# round -> value of one figure
	def v($s; $t; $p; $m): [.[] | select(.section == $s and .target == $t and .param == $p and .metric == $m and (.value | type) == "number")
		| {key: .round, value: .value}] | from_entries;
	# round -> proxy CPU per request (µs)
	def cpu($s; $t; $p): v($s; $t; $p; "proxy_cpu_s") as $c | v($s; $t; $p; "requests") as $q
		| [$c | keys[] as $r | select(($q[$r] // 0) > 0) | {key: $r, value: ($c[$r] / $q[$r] * 1e6)}] | from_entries;
	# round -> CPU seconds $m of target $t per event: per delivered event (pushed - lost)
	# when $delivered, else per pushed event (events sections; a round without the
	# counts keeps the CPU seconds, so that a ratio of two is the ratio of the CPU times)
	def perev($s; $t; $p; $m; $delivered): v($s; $t; $p; $m) as $c | v($s; $t; $p; "pushed") as $n
		| v($s; $t; $p; "lost") as $l
		| [$c | keys[] as $r | (if $n[$r] == null then 1 else $n[$r] - (if $delivered then $l[$r] // 0 else 0 end) end) as $e
			| select($e > 0) | {key: $r, value: ($c[$r] / $e)}] | from_entries;
	# median over rounds of f applied to [a, b] of the same round
	def paired(a; b; f): a as $a | b as $b | [$a | keys[] as $r | select($b[$r] != null) | [$a[$r], $b[$r]] | f] | med;
	def vals(a): [a[]] | med;
	# the highest churn rate target $t held; 0 when it was measured and held none
	def held($t): [.[] | select(.section == "churn" and .target == $t and .metric == "holds")] as $h
		| if $h == [] then null else [0, ($h[] | select(.value == 1) | .param[1:] | tonumber)] | max end;
	# whether target $t held every churn rate it was tried at: its highest is then only where
	# CHURN_RATES ended, not what it can do
	def capped($t): [.[] | select(.section == "churn" and .target == $t and .metric == "holds") | .value]
		| length > 0 and all(. == 1);
	def param($s; $prefix): [.[] | select(.section == $s and (.param | startswith($prefix))) | .param] | unique | .[0];
	def f($n; $d): if $n == null then "?" else ($n * pow(10; $d) | round) / pow(10; $d) | tostring end;
	def ms($x): f($x; 2);
	def sms($x): if $x == null then "?" elif $x >= 0 then "+" + ms($x) else ms($x) end;
	# the shape of an events run: "N streams at R ev/s[, B per upstream write]"
	def streams($s; $p): vals(v($s; "mcpgate"; $p; "streams")) as $n | vals(v($s; "mcpgate"; $p; "burst")) as $b
		| "\($n) streams at \($p[1:]) ev/s" + (if ($b // 1) > 1 then ", \($b) per upstream write" else "" end);
	def row($fig; $target; $measured; $ok; $cmd):
		{figure: $fig, target: $target, measured: (if $measured == null then "not measured" else $measured end),
		 verdict: (if $measured == null then "not measured" elif $ok then "met" else "missed" end),
		 run: (if $measured == null then "" else $run end), command: $cmd};
	. as $all |
	# floor($who; $one; fl): the row (input) with the figure of a floor measured in the same
	# run; fl is evaluated on the results and gives [text, met] or null; a missed row whose
	# floor misses too says so (the first floor applied that misses names itself)
	def floor($who; $one; fl): . as $row | ($all | fl) as $fl |
		if $fl == null or $fl[0] == null or $row.verdict == "not measured" then $row else
			$row | .measured += "; \($who): \($fl[0])"
			| if .verdict == "missed" and ($fl[1] | not) then .verdict = "missed (\($one) misses too)" else . end end;
	# the byte relay (loadtest relay): the floor of any proxy in user space here
	def relay_floor(fl): floor("byte relay"; "a byte relay"; fl);
	# the plain HTTP proxy (loadtest httpproxy): HTTP parsed and written with fasthttp
	def http_floor(fl): floor("plain HTTP proxy"; "a plain HTTP proxy on fasthttp"; fl);
	param("everything"; "r") as $refrate |
	param("ssefix"; "r") as $sserate |
	param("events"; "r") as $evrate |
	param("bursty"; "r") as $burate |
	[
	# 1-3: the reference everything-server (SSE answers) through mcpgate, Caddy and directly
	(paired(cpu("everything"; "mcpgate"; "c16"); cpu("everything"; "caddy"; "c16"); .[0] / .[1]) as $r
	 | row("gateway CPU per `tools/call` on the reference server (SSE answers) / Caddy'"'"'s CPU per call"; "≤ 0.25";
		(if $r == null then null else "\(f($r; 2)) (\(f(vals(cpu("everything"; "mcpgate"; "c16")); 1)) vs \(f(vals(cpu("everything"; "caddy"; "c16")); 1)) µs)" end);
		($r // 1e9) <= 0.25; "ONLY=everything make bench-compare")
	 | relay_floor(paired(cpu("everything"; "relay"; "c16"); cpu("everything"; "caddy"; "c16"); .[0] / .[1]) as $x
		| if $x == null then null else ["\(f($x; 2)) (\(f(vals(cpu("everything"; "relay"; "c16")); 1)) µs)", $x <= 0.25] end)
	 | http_floor(paired(cpu("everything"; "httpproxy"; "c16"); cpu("everything"; "caddy"; "c16"); .[0] / .[1]) as $x
		| if $x == null then null else ["\(f($x; 2)) (\(f(vals(cpu("everything"; "httpproxy"; "c16")); 1)) µs)", $x <= 0.25] end)),
	(paired(v("everything"; "mcpgate"; "c16"; "rps"); v("everything"; "direct"; "c16"; "rps"); .[0] / .[1]) as $r
	 | paired(v("everything"; "caddy"; "c16"; "rps"); v("everything"; "direct"; "c16"; "rps"); .[0] / .[1]) as $c
	 | row("same, saturation throughput / direct"; "≥ 0.85";
		(if $r == null then null else "\(f($r; 2)) (\(f(vals(v("everything"; "mcpgate"; "c16"; "rps")); 0)) vs \(f(vals(v("everything"; "direct"; "c16"; "rps")); 0)) calls/s; Caddy \(f($c; 2)))" end);
		($r // 0) >= 0.85; "ONLY=everything make bench-compare")
	 | relay_floor(paired(v("everything"; "relay"; "c16"; "rps"); v("everything"; "direct"; "c16"; "rps"); .[0] / .[1]) as $x
		| if $x == null then null else [f($x; 2), $x >= 0.85] end)
	 | http_floor(paired(v("everything"; "httpproxy"; "c16"; "rps"); v("everything"; "direct"; "c16"; "rps"); .[0] / .[1]) as $x
		| if $x == null then null else [f($x; 2), $x >= 0.85] end)),
	(if $refrate == null then row("same, added latency over direct at 1,000 calls/s, p50 / p99"; "≤ +0.3 / +1.0 ms"; null; false; "ONLY=everything make bench-compare") else
	 paired(v("everything"; "mcpgate"; $refrate; "p50_ms"); v("everything"; "direct"; $refrate; "p50_ms"); .[0] - .[1]) as $a50
	 | paired(v("everything"; "mcpgate"; $refrate; "p99_ms"); v("everything"; "direct"; $refrate; "p99_ms"); .[0] - .[1]) as $a99
	 | row("same, added latency over direct at 1,000 calls/s, p50 / p99"; "≤ +0.3 / +1.0 ms";
		"\(sms($a50)) / \(sms($a99)) ms at \($refrate[1:]) calls/s (direct \(ms(vals(v("everything"; "direct"; $refrate; "p50_ms")))) / \(ms(vals(v("everything"; "direct"; $refrate; "p99_ms")))) ms)";
		$a50 <= 0.3 and $a99 <= 1.0; "ONLY=everything make bench-compare")
	 | relay_floor(paired(v("everything"; "relay"; $refrate; "p50_ms"); v("everything"; "direct"; $refrate; "p50_ms"); .[0] - .[1]) as $x50
		| paired(v("everything"; "relay"; $refrate; "p99_ms"); v("everything"; "direct"; $refrate; "p99_ms"); .[0] - .[1]) as $x99
		| if $x50 == null then null else ["\(sms($x50)) / \(sms($x99)) ms", $x50 <= 0.3 and $x99 <= 1.0] end)
	 | http_floor(paired(v("everything"; "httpproxy"; $refrate; "p50_ms"); v("everything"; "direct"; $refrate; "p50_ms"); .[0] - .[1]) as $x50
		| paired(v("everything"; "httpproxy"; $refrate; "p99_ms"); v("everything"; "direct"; $refrate; "p99_ms"); .[0] - .[1]) as $x99
		| if $x50 == null then null else ["\(sms($x50)) / \(sms($x99)) ms", $x50 <= 0.3 and $x99 <= 1.0] end) end),
	# 4: SSE- vs JSON-answered calls on the mock at one fixed rate
	(if $sserate == null then null else paired(cpu("ssefix"; "mcpgate-sse"; $sserate); cpu("ssefix"; "mcpgate"; $sserate); .[0] / .[1]) end) as $r
	 | (row("gateway CPU per SSE-answered call / per JSON-answered call (same mock, same run)"; "≤ 1.3";
		(if $r == null then null else "\(f($r; 2)) (\(f(vals(cpu("ssefix"; "mcpgate-sse"; $sserate)); 1)) vs \(f(vals(cpu("ssefix"; "mcpgate"; $sserate)); 1)) µs at \($sserate[1:]) calls/s)" end);
		($r // 1e9) <= 1.3; "ONLY=sse make bench-compare")
	 | relay_floor(if $sserate == null then null else paired(cpu("ssefix"; "relay-sse"; $sserate); cpu("ssefix"; "relay"; $sserate); .[0] / .[1]) as $x
		| if $x == null then null else ["SSE / JSON \(f($x; 2)) (\(f(vals(cpu("ssefix"; "relay-sse"; $sserate)); 1)) vs \(f(vals(cpu("ssefix"; "relay"; $sserate)); 1)) µs)", $x <= 1.3] end end)
	 | http_floor(if $sserate == null then null else paired(cpu("ssefix"; "httpproxy-sse"; $sserate); cpu("ssefix"; "httpproxy"; $sserate); .[0] / .[1]) as $x
		| if $x == null then null else ["SSE / JSON \(f($x; 2)) (\(f(vals(cpu("ssefix"; "httpproxy-sse"; $sserate)); 1)) vs \(f(vals(cpu("ssefix"; "httpproxy"; $sserate)); 1)) µs)", $x <= 1.3] end end)),
	# 5-6: events across live streams, gateway and direct alternating
	(if $evrate == null then null else
		paired(perev("events"; "mcpgate"; $evrate; "proxy_cpu_s"; true); perev("events"; "mcpgate"; $evrate; "upstream_cpu_s"; false); .[0] / .[1]) end) as $r
	 | (row("gateway CPU per delivered event / the mock'"'"'s CPU per pushed event, 1,000 streams at 10k ev/s"; "≤ 1.0";
		(if $r == null then null else "\(f($r; 2)) (\(streams("events"; $evrate)))" end); ($r // 1e9) <= 1.0; "ONLY=events make bench-compare")
	 | relay_floor(if $evrate == null then null else
		paired(perev("events"; "relay"; $evrate; "proxy_cpu_s"; true); perev("events"; "relay"; $evrate; "upstream_cpu_s"; false); .[0] / .[1]) as $x
		| if $x == null then null else [f($x; 2), $x <= 1.0] end end)
	 | http_floor(if $evrate == null then null else
		paired(perev("events"; "httpproxy"; $evrate; "proxy_cpu_s"; true); perev("events"; "httpproxy"; $evrate; "upstream_cpu_s"; false); .[0] / .[1]) as $x
		| if $x == null then null else [f($x; 2), $x <= 1.0] end end)),
	(if $evrate == null then null else
		paired(v("events"; "mcpgate"; $evrate; "p99_ms"); v("events"; "direct"; $evrate; "p99_ms"); .[0] - .[1]) end) as $d
	 | (row("added p99 over direct, 1,000 streams at 10k ev/s"; "≤ +2 ms";
		(if $d == null then null else "\(sms($d)) ms (\(ms(vals(v("events"; "mcpgate"; $evrate; "p99_ms")))) vs \(ms(vals(v("events"; "direct"; $evrate; "p99_ms")))) ms; \(streams("events"; $evrate)); lost \([v("events"; "mcpgate"; $evrate; "lost")[]] | add))" end);
		($d // 1e9) <= 2; "ONLY=events make bench-compare")
	 | relay_floor(if $evrate == null then null else
		paired(v("events"; "relay"; $evrate; "p99_ms"); v("events"; "direct"; $evrate; "p99_ms"); .[0] - .[1]) as $x
		| if $x == null then null else ["\(sms($x)) ms", $x <= 2] end end)
	 | http_floor(if $evrate == null then null else
		paired(v("events"; "httpproxy"; $evrate; "p99_ms"); v("events"; "direct"; $evrate; "p99_ms"); .[0] - .[1]) as $x
		| if $x == null then null else ["\(sms($x)) ms", $x <= 2] end end)),
	# 7: bursty streams
	(if $burate == null then null else
		v("bursty"; "mcpgate"; $burate; "delivered_per_s") as $d | v("bursty"; "mcpgate"; $burate; "measured_s") as $s
		| v("bursty"; "mcpgate"; $burate; "proxy_cpu_s") as $c
		| [$d | keys[] as $k | select(($c[$k] // 0) > 0) | $d[$k] * $s[$k] / $c[$k]] as $per | {med: ($per | med), all: $per} end) as $b
	 | (row("bursty streams (100 streams, the mock writing 64 events at once): events per gateway CPU-second"; "≥ 500,000";
		(if $b == null then null else "\(f($b.med; 0)) (rounds: \($b.all | map(f(.; 0)) | join(", ")); \(streams("bursty"; $burate)))" end);
		($b.med // 0) >= 500000; "ONLY=bursty make bench-compare")
	 | relay_floor(if $burate == null then null else
		v("bursty"; "relay"; $burate; "delivered_per_s") as $d | v("bursty"; "relay"; $burate; "measured_s") as $s
		| v("bursty"; "relay"; $burate; "proxy_cpu_s") as $c
		| [$d | keys[] as $k | select(($c[$k] // 0) > 0) | $d[$k] * $s[$k] / $c[$k]] | med
		| if . == null then null else [f(.; 0), . >= 500000] end end)
	 | http_floor(if $burate == null then null else
		v("bursty"; "httpproxy"; $burate; "delivered_per_s") as $d | v("bursty"; "httpproxy"; $burate; "measured_s") as $s
		| v("bursty"; "httpproxy"; $burate; "proxy_cpu_s") as $c
		| [$d | keys[] as $k | select(($c[$k] // 0) > 0) | $d[$k] * $s[$k] / $c[$k]] | med
		| if . == null then null else [f(.; 0), . >= 500000] end end)),
	# 8: churn, the highest rate that holds
	# (a direct that held every rate tried makes the ratio an upper bound: never met)
	held("mcpgate") as $m | held("direct") as $d | (if $d == 0 then null else $d end) as $d | capped("direct") as $dc
	 | (row("session churn (initialize + call + DELETE) through mcpgate / direct, highest rate that holds"; "≥ 0.8";
		(if $m == null or $d == null then null
		 elif $dc then "at most \(f($m / $d; 2)) (\($m)/s vs ≥ \($d)/s: direct held every rate tried)"
		 else "\(f($m / $d; 2)) (\($m)/s vs \($d)/s)" end);
		($m // 0) / ($d // 1) >= 0.8 and ($dc | not); "ONLY=churn make bench-compare")
	 | relay_floor(held("relay")
		| if . == null or $d == null then null else ["\(f(. / $d; 2)) (\(.)/s)", . / $d >= 0.8] end)
	 | http_floor(held("httpproxy")
		| if . == null or $d == null then null else ["\(f(. / $d; 2)) (\(.)/s)", . / $d >= 0.8] end)),
	# 9: RSS per idle connected stream
	(vals(v("streammem"; "mcpgate"; "slope"; "rss_per_stream_bytes")) as $s
	 | row("RSS per idle connected stream (session + standalone GET)"; "≤ 8 KiB";
		(if $s == null then null else "\(f($s / 1024; 2)) KiB (reps: \([v("streammem"; "mcpgate"; "slope"; "rss_per_stream_bytes")[]] | map(f(. / 1024; 2)) | join(", ")))" end);
		($s // 1e9) <= 8192; "ONLY=streammem make bench-compare")),
	# 10: a million idle sessions
	(v("million"; "mcpgate"; "-"; "rss_bytes")["1"] as $rss | v("million"; "mcpgate"; "-"; "idle_cpu_pct")["1"] as $cpu
	 | v("million"; "mcpgate"; "-"; "last_expiry_late_s")["1"] as $late | v("million"; "mcpgate"; "-"; "check_period_s")["1"] as $chk
	 | v("million"; "mcpgate"; "-"; "sessions")["1"] as $n
	 | v("million"; "mcpgate"; "-"; "idle_window_s")["1"] as $win | v("million"; "mcpgate"; "-"; "gc_cycles_in_window")["1"] as $gcs
	 | row("idle sessions held by one gateway (mock upstream): RSS, CPU while idle, expiry"; "1,000,000: ≤ 1 GiB RSS, ≤ 2 % of a core, expiry on time (the last within one check period, + 1 s of polling, of its idle timeout)";
		(if $rss == null then null else "\($n // "?") sessions: \(f($rss / 1048576; 1)) MiB, \(f($cpu; 2)) % of a core\(if $win == null then "" else " (over \(f($win; 0)) s, \($gcs // "?") GC cycles in it)" end), the last expired \(f($late; 1)) s past its idle timeout (check period \(f($chk; 1)) s)" end);
		($n // 0) >= 1000000 and ($rss // 1e18) <= 1073741824 and ($cpu // 100) <= 2 and ($late // 1e9) <= ($chk // 0) + 1; "ONLY=million make bench-compare"))
	]' "$DIR/results.json" >"$DIR/table.json"

{
	echo "| figure | target | measured (medians of per-round paired values) | verdict | run | command |"
	echo "|---|---|---|---|---|---|"
	jq -r '.[] | "| \(.figure) | \(.target) | \(.measured) | \(.verdict) | \(.run) | `\(.command)` |"' "$DIR/table.json"
} >"$DIR/table.md"
cat "$DIR/table.md"

[[ $README_UPDATE == 1 ]] || exit 0
# Merge into README.md: each measured row replaces the README row of the same figure
# (the text before the first " | "), or is added at the end of the table.
BEGIN_MARK='<!-- cost-table:begin (benchmarks/cost_table.sh --readme; do not edit by hand) -->'
END_MARK='<!-- cost-table:end -->'
grep -qF "$BEGIN_MARK" README.md && grep -qF "$END_MARK" README.md ||
	{ echo "cost_table.sh: README.md has no cost-table markers" >&2; exit 2; }
new_rows=$(grep -v 'not measured' "$DIR/table.md" | tail -n +3 || true)
awk -v begin="$BEGIN_MARK" -v end="$END_MARK" -v rows="$new_rows" -v head="$(head -n 2 "$DIR/table.md")" '
	function key(r) { sub(/^\| /, "", r); sub(/ \|.*/, "", r); return r }
	BEGIN {
		n = split(rows, nr, "\n")
		for (i = 1; i <= n; i++) if (nr[i] != "") { fresh[key(nr[i])] = nr[i]; order[++k] = key(nr[i]) }
	}
	$0 == begin { print; print head; inside = 1; next }
	inside && $0 == end {
		for (i = 1; i <= k; i++) if (!(order[i] in done)) print fresh[order[i]]
		inside = 0; print; next
	}
	inside {
		if ($0 !~ /^\| / || $0 ~ /^\| figure \|/ || $0 ~ /^\|---/) next
		kk = key($0)
		if (kk in fresh) { print fresh[kk]; done[kk] = 1 } else print
		next
	}
	{ print }' README.md >README.md.tmp
mv README.md.tmp README.md
echo "cost_table.sh: README.md's cost table updated from $DIR" >&2
