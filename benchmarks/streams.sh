#!/usr/bin/env bash
# benchmarks/streams.sh: stream benchmarks through the real gateway binary in front of
# the mock upstream (bin/loadtest upstream), driven by bin/loadtest run. Prints Markdown
# tables on stdout; progress goes to stderr. Numbers are recorded in
# benchmarks/BENCHMARKS.md.
#
#   make build && benchmarks/streams.sh
#
# Three parts (PARTS, default "memory rate slow"):
#   memory  gateway memory per idle session holding one standalone GET stream: N sessions
#           each with one idle GET stream (loadtest -scenario post -streams -1 -rate 1),
#           process_resident_memory_bytes and go_memstats_heap_inuse_bytes read from the
#           gateway's /metrics (on its admin listener) once the streams are up and settled, at N = MEM_SIZES;
#           slope = (M(N2) - M(N1)) / (N2 - N1). The same with sessions only (-streams 0)
#           splits the cost into session and stream. The gateway's CPU over the readings
#           (MEM_IDLE_S seconds) is what the idle sessions cost it (sweeps, heartbeats).
#   rate    events/s delivered across RATE_SESSIONS streams and their delivery latency at
#           each offered rate in RATES, through the gateway and directly against the mock
#           upstream (the baseline), alternating.
#   slow    one stalled reader among SLOW_SESSIONS streams (-scenario slow, SLOW_FRACTION)
#           against the same run without it (-scenario stream), per drop policy in
#           POLICIES, alternating A/B, SLOW_REPS runs each; medians of the others' p99.
#
# Environment (all optional):
#   LOADTEST_BIN, GATEWAY_BIN   binaries (default bin/loadtest, bin/gateway)
#   LOCK=/tmp/mcpgate-bench.lock  every measured run holds this flock (empty: no lock)
#   OUT=dir                     keep every JSON result, metrics scrape and log here
#                               (default: a temporary directory, removed on exit)
#   GATEWAY_PROCS=1, UPSTREAM_PROCS=1, LOADTEST_PROCS=  GOMAXPROCS per process
#                               (empty: the Go default, all cores)
#   MEM_SIZES="1000 5000"  MEM_REPS=2  MEM_SETTLE=5  MEM_KINDS="stream session"  MEM_IDLE_S=5
#   RATES="10000 50000 100000"  RATE_SESSIONS=1000  RATE_REPS=1
#   BURST=1                     rate: events the mock upstream writes at once (bursty streams)
#   RATE_PATHS=gateway          rate: skip the direct runs (A/B of gateway builds)
#   RATE_RELAY=1                rate: also run each rep through `loadtest relay` (a byte relay,
#                               nothing parsed: the floor of a proxy), recorded as path "relay",
#                               and through `loadtest httpproxy` (a plain HTTP proxy on fasthttp,
#                               mcpgate's HTTP library), recorded as path "httpproxy"
#   DURATION=20s  WARMUP=3s     measured time and warm-up of the rate runs
#   SLOW_SESSIONS=500  SLOW_FRACTION=0.002  SLOW_RATE=25000  SLOW_PAYLOAD=512
#   SLOW_DURATION=15s  SLOW_WARMUP=3s  SLOW_REPS=3
#   POLICIES="drop-oldest drop-newest disconnect"
#   GATEWAY_ARGS, UPSTREAM_ARGS  extra flags for the two servers
#   GATEWAY_ENV                 VAR=value words for the gateway's environment only (GOGC=50)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
loadtest="${LOADTEST_BIN:-$root/bin/loadtest}"
gateway="${GATEWAY_BIN:-$root/bin/gateway}"
lock="${LOCK-/tmp/mcpgate-bench.lock}"
parts="${PARTS:-memory rate slow}"
gw_procs="${GATEWAY_PROCS-1}"
up_procs="${UPSTREAM_PROCS-1}"
lt_procs="${LOADTEST_PROCS-}"
mem_sizes="${MEM_SIZES:-1000 5000}"
mem_reps="${MEM_REPS:-2}"
mem_settle="${MEM_SETTLE:-5}"
mem_kinds="${MEM_KINDS:-stream session}"
mem_idle_s="${MEM_IDLE_S:-5}"
rates="${RATES:-10000 50000 100000}"
rate_sessions="${RATE_SESSIONS:-1000}"
rate_reps="${RATE_REPS:-1}"
burst="${BURST:-1}"
duration="${DURATION:-20s}"
warmup="${WARMUP:-3s}"
slow_sessions="${SLOW_SESSIONS:-500}"
slow_fraction="${SLOW_FRACTION:-0.002}"
slow_rate="${SLOW_RATE:-25000}"
slow_payload="${SLOW_PAYLOAD:-512}"
slow_duration="${SLOW_DURATION:-15s}"
slow_warmup="${SLOW_WARMUP:-3s}"
slow_reps="${SLOW_REPS:-3}"
policies="${POLICIES:-drop-oldest drop-newest disconnect}"

for bin in "$loadtest" "$gateway"; do
	[[ -x "$bin" ]] || { echo "streams.sh: $bin not built (make build)" >&2; exit 3; }
done
command -v jq >/dev/null || { echo "streams.sh: needs jq" >&2; exit 3; }

if [[ -n "${OUT:-}" ]]; then
	out="$OUT"
	mkdir -p "$out"
	keep=1
else
	out="$(mktemp -d -t mcpgate-streams-out.XXXXXX)"
	keep=
fi
work="$(mktemp -d -t mcpgate-streams.XXXXXX)"

pids=()
lockfd=
started=0
cleanup() {
	stop_all
	[[ -n "$lockfd" ]] && flock -u "$lockfd" 2>/dev/null || true
	rm -rf "$work"
	[[ -n "$keep" ]] || rm -rf "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "streams.sh: $*" >&2; }

# lock / unlock: hold the shared benchmark lock around one measured run. The servers
# started inside inherit the descriptor; flock -u releases the lock for them too.
lock() {
	[[ -n "$lock" ]] || return 0
	exec {lockfd}>>"$lock"
	flock "$lockfd"
}
unlock() {
	[[ -n "$lock" && -n "$lockfd" ]] || return 0
	flock -u "$lockfd"
	exec {lockfd}>&-
	lockfd=
}

# procs_env N: the env assignment for GOMAXPROCS=N (nothing when N is empty).
procs_env() { [[ -n "$1" ]] && echo "GOMAXPROCS=$1" || true; }

# start NAME PROCS CMD...: runs CMD in the background with GOMAXPROCS=PROCS (when set),
# sets $url to the URL it prints first and $pid to its process id; $out_file is its stdout.
start() {
	local name="$1.$((++started))" procs="$2"
	shift 2
	# shellcheck disable=SC2046
	env $(procs_env "$procs") "$@" >"$work/$name.out" 2>"$work/$name.err" &
	pid="$!"
	pids+=("$pid")
	local line="" i
	for ((i = 0; i < 400; i++)); do
		if [[ -s "$work/$name.out" ]] && [[ "$(wc -l <"$work/$name.out")" -ge 1 ]]; then
			line="$(head -n 1 "$work/$name.out")"
			break
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			log "$name exited early:"
			cat "$work/$name.err" >&2
			exit 3
		fi
		sleep 0.05
	done
	if [[ "$line" != "listening on http://"* ]]; then
		log "$name did not print its URL (got: '$line')"
		cat "$work/$name.err" >&2
		exit 3
	fi
	url="${line#listening on }"
	out_file="$work/$name.out"
}

# admin_of: waits for the second stdout line of the process started last (the gateway's
# "admin on URL") and sets $admin to that URL.
admin_of() {
	local i
	admin=""
	for ((i = 0; i < 400; i++)); do
		admin="$(sed -n '2s/^admin on //p' "$out_file")"
		[[ -n "$admin" ]] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	log "the gateway did not print its admin address"
	exit 3
}

# stop_all: SIGTERM every process started so far and wait for it.
stop_all() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	pids=()
}

# servers [GATEWAY_FLAGS...]: starts the mock upstream and, unless DIRECT=1, the gateway
# in front of it. Sets target (the URL to load), up_pid, gw_pid and metrics.
servers() {
	# shellcheck disable=SC2086
	start upstream "$up_procs" "$loadtest" upstream -listen 127.0.0.1:0 ${UPSTREAM_ARGS:-}
	up_pid="$pid"
	local up="$url"
	target="$up"
	metrics="${up%/mcp}/metrics"
	gw_pid=
	if [[ "${RELAY_PATH:-}" == 1 ]]; then
		# the byte relay (loadtest relay) in the gateway's place: the floor of a proxy
		local hostport="${up#http://}"
		start relay "$gw_procs" "$loadtest" relay -listen 127.0.0.1:0 -to "${hostport%%/*}"
		gw_pid="$pid"
		target="$url"
	elif [[ "${HPROXY_PATH:-}" == 1 ]]; then
		# the plain HTTP proxy on fasthttp (loadtest httpproxy) in the gateway's place
		local hostport="${up#http://}"
		start httpproxy "$gw_procs" "$loadtest" httpproxy -listen 127.0.0.1:0 -to "${hostport%%/*}"
		gw_pid="$pid"
		target="$url"
	elif [[ "${DIRECT:-}" != 1 ]]; then
		# shellcheck disable=SC2086
		start gateway "$gw_procs" env ${GATEWAY_ENV:-} "$gateway" -listen 127.0.0.1:0 -admin-listen 127.0.0.1:0 -upstream "$up" -log-level warn "$@" ${GATEWAY_ARGS:-}
		gw_pid="$pid"
		target="$url"
		admin_of
		metrics="$admin/metrics"
	fi
}

# metric TEXTFILE NAME: the sum of every sample of NAME (all label sets) in a scrape.
metric() {
	[[ -f "$1" ]] || { echo 0; return; }
	awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.0f\n", s + 0 }' "$1"
}

scrape() { curl -fsS --max-time 5 "$1" >"$2"; }

# cpu_s PID: user+system CPU seconds the process has used so far.
cpu_s() {
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# median of numbers on stdin.
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) { print "n/a"; exit } if (NR % 2) print a[(NR + 1) / 2]; else printf "%.4g\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# ---------------------------------------------------------------------------- memory
# One memory point: N sessions, with (kind=stream) or without (kind=session) one idle
# GET stream each. Appends "kind N rep rss heap goroutines sys loadavg idle-cpu" to
# $out/memory.tsv (idle-cpu: the gateway's CPU seconds per second over the readings).
memory_point() {
	local kind="$1" n="$2" rep="$3" streams=-1
	[[ "$kind" == session ]] && streams=0
	lock
	local la
	la="$(loadavg)"
	servers
	local ltpid tag="mem-$kind-$n-$rep"
	# shellcheck disable=SC2046
	env $(procs_env "$lt_procs") "$loadtest" run -target "$target" -scenario post -sessions "$n" -streams "$streams" \
		-rate 1 -duration 10m -warmup 0 -conns 32 -quiet -max-errors -1 >"$work/$tag.log" 2>&1 &
	ltpid="$!"
	pids+=("$ltpid")
	# Wait for the sessions (and streams) to be up.
	local i up=0 want="$n"
	for ((i = 0; i < 600; i++)); do
		scrape "$metrics" "$work/m.txt" || true
		if [[ "$kind" == stream ]]; then
			up=$(($(metric "$work/m.txt" mcpgate_streams_opened_total) - $(metric "$work/m.txt" mcpgate_streams_closed_total)))
		else
			up=$(metric "$work/m.txt" mcpgate_sessions)
		fi
		((up >= want)) && break
		kill -0 "$ltpid" 2>/dev/null || { log "$tag: loadtest ended early"; cat "$work/$tag.log" >&2; exit 3; }
		sleep 0.2
	done
	((up >= want)) || { log "$tag: only $up of $want up after 120 s"; exit 3; }
	sleep "$mem_settle"
	# MEM_IDLE_S readings a second apart; the medians are recorded.
	local rss=() heap=() gor=() sys=() c0 c1 t0 t1
	c0="$(cpu_s "${gw_pid:-$up_pid}")"
	t0="$(date +%s.%N)"
	for ((i = 0; i < mem_idle_s; i++)); do
		scrape "$metrics" "$work/m.txt"
		rss+=("$(metric "$work/m.txt" process_resident_memory_bytes)")
		heap+=("$(metric "$work/m.txt" go_memstats_heap_inuse_bytes)")
		gor+=("$(metric "$work/m.txt" go_goroutines)")
		sys+=("$(metric "$work/m.txt" go_memstats_sys_bytes)")
		sleep 1
	done
	c1="$(cpu_s "${gw_pid:-$up_pid}")"
	t1="$(date +%s.%N)"
	cp "$work/m.txt" "$out/$tag.metrics.txt"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$n" "$rep" \
		"$(printf '%s\n' "${rss[@]}" | median)" "$(printf '%s\n' "${heap[@]}" | median)" \
		"$(printf '%s\n' "${gor[@]}" | median)" "$(printf '%s\n' "${sys[@]}" | median)" "$la" \
		"$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" 'BEGIN { printf "%.3f", (b - a) / (e - s) }')" >>"$out/memory.tsv"
	kill -INT "$ltpid" 2>/dev/null || true
	wait "$ltpid" 2>/dev/null || true
	stop_all
	unlock
	log "$tag: $(tail -n 1 "$out/memory.tsv")"
}

memory_part() {
	: >"$out/memory.tsv"
	local rep kind n sizes
	for ((rep = 1; rep <= mem_reps; rep++)); do
		sizes="$mem_sizes"
		# Alternate the order of the sizes from one repetition to the next.
		((rep % 2 == 0)) && sizes="$(echo "$mem_sizes" | tr ' ' '\n' | tac | tr '\n' ' ')"
		for kind in $mem_kinds; do
			for n in $sizes; do
				memory_point "$kind" "$n" "$rep"
			done
		done
	done
	local lo hi
	lo="$(echo "$mem_sizes" | tr ' ' '\n' | sort -n | head -n 1)"
	hi="$(echo "$mem_sizes" | tr ' ' '\n' | sort -n | tail -n 1)"
	echo
	echo "### Gateway memory per idle session (GATEWAY_PROCS=${gw_procs:-default}, UPSTREAM_PROCS=${up_procs:-default})"
	echo
	echo "| what | rep | N | RSS MiB | heap in use MiB | goroutines | gateway CPU while idle, % of a core | load avg |"
	echo "|---|---|---|---|---|---|---|---|"
	sort -k1,1r -k3,3n -k2,2n "$out/memory.tsv" | awk -F'\t' '{ printf "| %s | %s | %s | %.1f | %.1f | %s | %.1f | %s |\n", ($1 == "stream" ? "session + idle GET stream" : "session only"), $3, $2, $4 / 1048576, $5 / 1048576, $6, $9 * 100, $8 }'
	echo
	echo "| what | slope RSS per unit ($lo -> $hi) | slope heap per unit | per-rep RSS slopes |"
	echo "|---|---|---|---|"
	for kind in $mem_kinds; do
		awk -F'\t' -v k="$kind" -v lo="$lo" -v hi="$hi" '
			$1 == k && $2 == lo { rl[$3] = $4; hl[$3] = $5 }
			$1 == k && $2 == hi { rh[$3] = $4; hh[$3] = $5 }
			END {
				n = 0; list = ""
				for (r in rl) if (r in rh) {
					s = (rh[r] - rl[r]) / (hi - lo); h = (hh[r] - hl[r]) / (hi - lo)
					rs[++n] = s; hs[n] = h; list = list sprintf("%s%.2f", (list == "" ? "" : ", "), s / 1024)
				}
				# medians
				for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) { if (rs[j] < rs[i]) { t = rs[i]; rs[i] = rs[j]; rs[j] = t } if (hs[j] < hs[i]) { t = hs[i]; hs[i] = hs[j]; hs[j] = t } }
				mr = (n % 2) ? rs[(n + 1) / 2] : (rs[n / 2] + rs[n / 2 + 1]) / 2
				mh = (n % 2) ? hs[(n + 1) / 2] : (hs[n / 2] + hs[n / 2 + 1]) / 2
				printf "| %s | %.2f KiB | %.2f KiB | %s KiB |\n", (k == "stream" ? "session + idle GET stream" : "session only"), mr / 1024, mh / 1024, list
			}' "$out/memory.tsv"
	done
}

# ---------------------------------------------------------------------------- rate
# One rate run: appends "target rate rep offered achieved p50 p90 p99 p999 max lost
# offered_events errors gw_cpu up_cpu lt_cpu loadavg" to $out/rate.tsv.
rate_point() {
	local where="$1" rate="$2" rep="$3" tag="rate-$1-$2-$3"
	lock
	local la
	la="$(loadavg)"
	case "$where" in
	direct) DIRECT=1 RELAY_PATH= HPROXY_PATH= servers ;;
	relay) DIRECT= RELAY_PATH=1 HPROXY_PATH= servers ;;
	httpproxy) DIRECT= RELAY_PATH= HPROXY_PATH=1 servers ;;
	*) DIRECT= RELAY_PATH= HPROXY_PATH= servers ;;
	esac
	local up0 gw0=0 up1 gw1=0 lt
	up0="$(cpu_s "$up_pid")"
	[[ -n "$gw_pid" ]] && gw0="$(cpu_s "$gw_pid")"
	local TIMEFORMAT='%U %S'
	set +e
	# shellcheck disable=SC2046
	lt="$({ time env $(procs_env "$lt_procs") "$loadtest" run -target "$target" -scenario stream -sessions "$rate_sessions" \
		-rate "$rate" -burst "$burst" -duration "$duration" -warmup "$warmup" -quiet -max-loss -1 -max-errors -1 \
		-out "$out/$tag.json" >"$work/$tag.log" 2>&1; } 2>&1)"
	set -e
	up1="$(cpu_s "$up_pid")"
	[[ -n "$gw_pid" ]] && gw1="$(cpu_s "$gw_pid")"
	stop_all
	unlock
	[[ -s "$out/$tag.json" ]] || { log "$tag: no result"; cat "$work/$tag.log" >&2; exit 3; }
	jq -r --arg w "$where" --arg rep "$rep" --arg la "$la" \
		--arg gw "$(awk -v a="$gw0" -v b="$gw1" 'BEGIN { printf "%.2f", b - a }')" \
		--arg up "$(awk -v a="$up0" -v b="$up1" 'BEGIN { printf "%.2f", b - a }')" \
		--arg lt "$(echo "$lt" | awk '{ printf "%.1f", $1 + $2 }')" \
		'[$w, (.offered_rate|tostring), $rep, (.offered_rate|tostring), (.achieved_rate|tostring),
		  (.latency.event.p50_ms|tostring), (.latency.event.p90_ms|tostring), (.latency.event.p99_ms|tostring),
		  (.latency.event.p99_9_ms|tostring), (.latency.event.max_ms|tostring),
		  (.events.push.lost|tostring), (.events.push.offered|tostring), (.error_count|tostring), $gw, $up, $lt, $la] | @tsv' \
		"$out/$tag.json" >>"$out/rate.tsv"
	log "$tag: $(tail -n 1 "$out/rate.tsv")"
}

rate_part() {
	: >"$out/rate.tsv"
	local rep rate i order
	i=0
	for ((rep = 1; rep <= rate_reps; rep++)); do
		for rate in $rates; do
			# Alternate which target goes first.
			if ((i % 2 == 0)); then order="gateway direct"; else order="direct gateway"; fi
			[[ "${RATE_PATHS:-}" == gateway ]] && order=gateway
			[[ "${RATE_RELAY:-}" == 1 ]] && order="$order relay httpproxy"
			i=$((i + 1))
			for w in $order; do
				rate_point "$w" "$rate" "$rep"
			done
		done
	done
	echo
	echo "### Events across $rate_sessions streams, $burst per upstream write (GATEWAY_PROCS=${gw_procs:-default}, UPSTREAM_PROCS=${up_procs:-default}, LOADTEST_PROCS=${lt_procs:-default}; $duration measured after $warmup warm-up)"
	echo
	echo "| offered ev/s | path | rep | delivered ev/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | lost | errors | CPU s gateway / upstream / loadtest | load avg |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	sort -t$'\t' -k2,2n -k3,3n -k1,1r "$out/rate.tsv" | awk -F'\t' '{
		printf "| %d | %s | %s | %.0f | %.3f | %.3f | %.3f | %.3f | %.3f | %s of %s | %s | %s / %s / %s | %s |\n",
			$2, ($1 == "direct" ? "direct to upstream" : $1 == "relay" ? "through the byte relay" : $1 == "httpproxy" ? "through the plain HTTP proxy" : "through gateway"), $3, $5, $6, $7, $8, $9, $10, $11, $12, $13, ($1 == "direct" ? "-" : $14), $15, $16, $17 }'
	# Per rate: what the gateway spends per event against what the upstream spends
	# pushing it (both over the same gateway run, so the ratio needs no event count),
	# and the p99 it adds over the direct runs (medians over the reps).
	local secs gr up_us gw_us p99g p99d
	secs="$(awk -v a="${duration%s}" -v b="${warmup%s}" 'BEGIN { print a + b }')"
	echo
	echo "| offered ev/s | path | proxy CPU per event / upstream CPU per pushed event (median of runs) | proxy µs/event | upstream µs/event | proxy events per CPU-second | p99 through the path / direct ms (medians) | added p99 ms |"
	echo "|---|---|---|---|---|---|---|---|"
	local path
	for rate in $rates; do
		p99d="$(awk -F'\t' -v r="$rate" '$1 == "direct" && $2 == r { print $8 }' "$out/rate.tsv" | median)"
		for path in gateway relay httpproxy; do
			grep -q "^$path"$'\t'"$rate"$'\t' "$out/rate.tsv" || continue
			gr="$(awk -F'\t' -v p="$path" -v r="$rate" '$1 == p && $2 == r && $15 > 0 { print $14 / $15 }' "$out/rate.tsv" | median)"
			gw_us="$(awk -F'\t' -v p="$path" -v r="$rate" -v s="$secs" '$1 == p && $2 == r && $5 > 0 { print $14 / ($5 * s) * 1e6 }' "$out/rate.tsv" | median)"
			up_us="$(awk -F'\t' -v p="$path" -v r="$rate" -v s="$secs" '$1 == p && $2 == r && $5 > 0 { print $15 / ($5 * s) * 1e6 }' "$out/rate.tsv" | median)"
			p99g="$(awk -F'\t' -v p="$path" -v r="$rate" '$1 == p && $2 == r { print $8 }' "$out/rate.tsv" | median)"
			awk -v r="$rate" -v p="$path" -v gr="$gr" -v g="$gw_us" -v u="$up_us" -v a="$p99g" -v b="$p99d" \
				'BEGIN { printf "| %d | %s | %.2f | %.1f | %.1f | %.0f | %.2f / %.2f | %+.2f |\n", r, (p == "relay" ? "byte relay" : p == "httpproxy" ? "plain HTTP proxy" : "gateway"), gr, g, u, (g > 0 ? 1e6 / g : 0), a, b, a - b }'
		done
	done
	echo
	echo "(µs/event: CPU seconds over the run divided by delivered ev/s × ${secs} s of warm-up and measurement: approximate; the ratio is exact for the same run.)"
}

# ---------------------------------------------------------------------------- slow
# One slow-reader run: appends "policy mode rep p50 p99 p999 achieved stalled_p99 drops
# slow_disconnects stream_closes lost errors loadavg" to $out/slow.tsv.
slow_point() {
	local policy="$1" mode="$2" rep="$3" tag="slow-$1-$2-$3"
	local extra=()
	[[ "$mode" == slow ]] && extra=(-slow-fraction "$slow_fraction")
	lock
	local la
	la="$(loadavg)"
	DIRECT= servers -drop-policy "$policy"
	set +e
	# shellcheck disable=SC2046
	env $(procs_env "$lt_procs") "$loadtest" run -target "$target" -scenario "$mode" -sessions "$slow_sessions" \
		-rate "$slow_rate" -payload "$slow_payload" -duration "$slow_duration" -warmup "$slow_warmup" -quiet \
		-max-loss -1 -max-errors -1 "${extra[@]}" -out "$out/$tag.json" >"$work/$tag.log"  2>&1
	set -e
	scrape "$metrics" "$out/$tag.metrics.txt" || true
	stop_all
	unlock
	[[ -s "$out/$tag.json" ]] || { log "$tag: no result"; cat "$work/$tag.log" >&2; exit 3; }
	local m="$out/$tag.metrics.txt"
	jq -r --arg p "$policy" --arg mode "$mode" --arg rep "$rep" --arg la "$la" \
		--arg drops "$(metric "$m" mcpgate_events_dropped_total)" \
		--arg coal "$(metric "$m" mcpgate_events_coalesced_total)" \
		--arg sd "$(metric "$m" mcpgate_slow_consumer_disconnects_total)" \
		--arg ws "$(awk '/^mcpgate_streams_closed_total\{reason="write_stall"\}/ { s += $NF } END { print s + 0 }' "$m")" \
		'[$p, $mode, $rep, (.latency.event.p50_ms|tostring), (.latency.event.p99_ms|tostring), (.latency.event.p99_9_ms|tostring),
		  (.achieved_rate|tostring), ((.latency.event_stalled.p99_ms // "-")|tostring), $drops, $coal, $sd, $ws,
		  (.events.push.lost|tostring), (.error_count|tostring), $la] | @tsv' "$out/$tag.json" >>"$out/slow.tsv"
	log "$tag: $(tail -n 1 "$out/slow.tsv")"
}

slow_part() {
	: >"$out/slow.tsv"
	local policy rep order mode
	for policy in $policies; do
		for ((rep = 1; rep <= slow_reps; rep++)); do
			if ((rep % 2 == 1)); then order="stream slow"; else order="slow stream"; fi
			for mode in $order; do
				slow_point "$policy" "$mode" "$rep"
			done
		done
	done
	echo
	echo "### One stalled reader among $slow_sessions streams ($slow_rate ev/s offered, ${slow_payload} B padding, $slow_duration after $slow_warmup warm-up; gateway flags: ${GATEWAY_ARGS:-none} -drop-policy P; GATEWAY_PROCS=${gw_procs:-default}, UPSTREAM_PROCS=${up_procs:-default})"
	echo
	echo "| policy | run | rep | others' p50 ms | others' p99 ms | p99.9 ms | delivered ev/s | stalled p99 ms | dropped | coalesced | slow-consumer cuts | write-stall cuts | others lost | errors | load avg |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
	awk -F'\t' '{ printf "| %s | %s | %s | %.3f | %.3f | %.3f | %.0f | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, ($2 == "slow" ? "one stalled" : "none stalled"), $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 }' "$out/slow.tsv"
	echo
	echo "| policy | median p99 without stall ms | median p99 with one stalled reader ms | ratio (target <= 1.5) |"
	echo "|---|---|---|---|"
	for policy in $policies; do
		local a b
		a="$(awk -F'\t' -v p="$policy" '$1 == p && $2 == "stream" { print $5 }' "$out/slow.tsv" | median)"
		b="$(awk -F'\t' -v p="$policy" '$1 == p && $2 == "slow" { print $5 }' "$out/slow.tsv" | median)"
		awk -v p="$policy" -v a="$a" -v b="$b" 'BEGIN { printf "| %s | %.3f | %.3f | %.2f |\n", p, a, b, (a > 0 ? b / a : 0) }'
	done
}

echo "## Stream benchmarks"
echo
echo "CPU: $(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2; exit }'), $(nproc) cores; $(go version 2>/dev/null || echo 'go: n/a'); open files $(ulimit -n); started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
for part in $parts; do
	case "$part" in
	memory) memory_part ;;
	rate) rate_part ;;
	slow) slow_part ;;
	*) log "unknown part $part"; exit 2 ;;
	esac
done
[[ -n "$keep" ]] && log "results kept in $out"
exit 0
