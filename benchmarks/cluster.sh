#!/usr/bin/env bash
# What scale-out costs: one mock upstream, and in the same run, interleaved round by round,
#   single    one bin/gateway, no NATS (the default mode)
#   cluster1  one bin/gateway with -cluster (every request stays on the session's owner)
#   cluster3  three bin/gateway nodes with -cluster behind HAProxy, round-robin without
#             stickiness (a session's requests and streams land on every node)
# plus the upstream directly (direct) for the added latency. One NATS server (JetStream,
# file storage) serves both clusters, under different -cluster-prefix names.
#
#   make bench-cluster      (builds bin/, the NATS server into .cache, installs haproxy)
#
# Sections (SKIP="sat lat events" skips some):
#   sat     POST throughput at saturation: the closed-loop client of compare.sh (tools/call
#           echo, CMP_CONC workers over as many sessions); CPU per request of every gateway
#           process, the NATS server and HAProxy from /proc/<pid>/stat around the run
#   lat     added latency: bin/loadtest post, open loop at LAT_RATE calls/s
#   events  events per second delivered: bin/loadtest stream (the mock pushes on every
#           session's standalone stream; through cluster3 the owner pumps it into
#           JetStream and readers on other nodes read it from there); CPU per event
#
# Every round holds /tmp/mcpgate-bench.lock (flock) and waits for a quiet machine first
# (QUIET_MAX % busy, up to QUIET_WAIT s), like compare.sh. Results: results/cluster-<UTC>/
# (runs.tsv: section, target, round, metric, value; summary.md: medians of per-round values
# and of per-round ratios against single). Knobs (environment):
#   ROUNDS=5 SAT_CONC=16 SAT_DURATION=5s LAT_RATE=2000 LAT_DURATION=8s
#   EV_SESSIONS=100 EV_RATE=5000 EV_DURATION=8s QUIET_MAX=30 QUIET_WAIT=10
#   NATS_SERVER (nats-server binary) HAPROXY (haproxy binary)
set -euo pipefail

cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
SAT_CONC=${SAT_CONC:-16}
SAT_DURATION=${SAT_DURATION:-5s}
LAT_RATE=${LAT_RATE:-2000}
LAT_DURATION=${LAT_DURATION:-8s}
EV_SESSIONS=${EV_SESSIONS:-100}
EV_RATE=${EV_RATE:-5000}
EV_DURATION=${EV_DURATION:-8s}
QUIET_MAX=${QUIET_MAX:-30}
QUIET_WAIT=${QUIET_WAIT:-10}
LOCK=${LOCK:-/tmp/mcpgate-bench.lock}
SKIP=${SKIP:-}
NATS_SERVER=${NATS_SERVER:-.cache/bin/nats-server-v2.15.3}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}

die() { echo "cluster.sh: $*" >&2; exit 1; }
skip() { [[ " $SKIP " == *" $1 "* ]]; }
log() { echo "== $*" >&2; }

[[ -x bin/gateway && -x bin/loadtest ]] || die "bin/gateway and bin/loadtest missing: run make build first"
[[ -x $NATS_SERVER ]] || die "$NATS_SERVER missing: run make bench-cluster (or make tools)"
[[ -x $HAPROXY ]] || die "$HAPROXY missing: run make haproxy"
command -v jq >/dev/null || die "jq not found (apt-get install jq)"
command -v flock >/dev/null || die "flock (util-linux) not found"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-results/cluster-$STAMP}
mkdir -p "$OUT"
TMP=$(mktemp -d)
PIDS=()

cleanup() {
	local rc=$?
	for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME cmd...: a server printing "listening on URL" first (and "admin on URL");
# sets STARTED_PID, STARTED_URL and STARTED_ADMIN.
start() {
	local name=$1; shift
	"$@" >"$TMP/$name.out" 2>"$TMP/$name.err" 9>&- &
	STARTED_PID=$!
	PIDS+=("$STARTED_PID")
	for _ in $(seq 200); do
		STARTED_URL=$(sed -n '1s/^listening on //p' "$TMP/$name.out" 2>/dev/null)
		STARTED_ADMIN=$(sed -n '2s/^admin on //p' "$TMP/$name.out" 2>/dev/null)
		[[ -n $STARTED_URL ]] && return 0
		kill -0 "$STARTED_PID" 2>/dev/null || { cat "$TMP/$name.err" >&2; die "$name exited at start"; }
		sleep 0.1
	done
	die "$name did not print its address"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_tcp() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; die "nothing listens on port $1"; }
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

log "building the closed-loop benchmark client"
go test -c -tags bench -o "$TMP/compare.test" ./benchmarks >/dev/null
CMP="$TMP/compare.test"

RUNS="$OUT/runs.tsv"
printf 'section\ttarget\tround\tmetric\tvalue\n' >"$RUNS"
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RUNS"; }

{
	echo "date_utc: $(date -u +%FT%TZ)"
	echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -n1)"
	echo "nproc: $(nproc)"
	echo "kernel: $(uname -r)"
	echo "go: $(go version)"
	echo "nats-server: $("$NATS_SERVER" --version 2>&1 | head -n1)"
	echo "haproxy: $("$HAPROXY" -v 2>&1 | head -n1)"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')"
} | tee "$OUT/env.txt" >&2

# ---- processes ----------------------------------------------------------------------
start upstream bin/loadtest upstream -listen 127.0.0.1:0 -era session
UP_PID=$STARTED_PID UP_URL=$STARTED_URL

NATS_PORT=$(free_port)
"$NATS_SERVER" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$TMP/jetstream" >"$TMP/nats.out" 2>"$TMP/nats.err" 9>&- &
NATS_PID=$!
PIDS+=("$NATS_PID")
wait_tcp "$NATS_PORT"
NATS_URL="nats://127.0.0.1:$NATS_PORT"

GWFLAGS=(-listen 127.0.0.1:0 -admin-listen 127.0.0.1:0 -upstream "$UP_URL" -log-level warn)
start single bin/gateway "${GWFLAGS[@]}"
SINGLE_PID=$STARTED_PID SINGLE_URL=$STARTED_URL
start cluster1 bin/gateway "${GWFLAGS[@]}" -cluster "$NATS_URL" -cluster-prefix bench1 -node-id c1
C1_PID=$STARTED_PID C1_URL=$STARTED_URL
C3_PIDS=()
BACKENDS=""
for i in 1 2 3; do
	start "node$i" bin/gateway "${GWFLAGS[@]}" -cluster "$NATS_URL" -cluster-prefix bench3 -node-id "n$i"
	C3_PIDS+=("$STARTED_PID")
	hp=${STARTED_URL#http://}; hp=${hp%%/*}
	ad=${STARTED_ADMIN#http://}
	BACKENDS+="    server n$i $hp check inter 250ms fall 1 rise 2 addr ${ad%%:*} port ${ad##*:}"$'\n'
done
LB_PORT=$(free_port)
cat >"$OUT/haproxy.cfg" <<EOF
global
    maxconn 8000
defaults
    mode http
    timeout connect 2s
    timeout client 600s
    timeout server 600s
    timeout http-keep-alive 60s
    retries 3
    option redispatch 1
    option http-no-delay
frontend mcp
    bind 127.0.0.1:$LB_PORT
    default_backend gateways
backend gateways
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host 127.0.0.1
    http-check expect status 200
$BACKENDS
EOF
"$HAPROXY" -db -f "$OUT/haproxy.cfg" >"$TMP/haproxy.out" 2>"$TMP/haproxy.err" 9>&- &
LB_PID=$!
PIDS+=("$LB_PID")
wait_tcp "$LB_PORT"
C3_URL="http://127.0.0.1:$LB_PORT/mcp"
sleep 1 # two health checks bring the backends up
log "upstream $UP_URL; single $SINGLE_URL; cluster1 $C1_URL; cluster3 $C3_URL (nodes ${C3_PIDS[*]}); NATS $NATS_URL"

url_of() { case $1 in direct) echo "$UP_URL" ;; single) echo "$SINGLE_URL" ;; cluster1) echo "$C1_URL" ;; cluster3) echo "$C3_URL" ;; esac; }
gw_pids() { case $1 in single) echo "$SINGLE_PID" ;; cluster1) echo "$C1_PID" ;; cluster3) echo "${C3_PIDS[*]}" ;; esac; }

# measure SECTION TARGET ROUND cmd...: one run with the CPU ticks of every process around it.
measure() {
	local section=$1 target=$2 round=$3; shift 3
	local name="$section-$target-r$round" busy la p all0=() all1=() procs t0 t1 i
	busy=$(quiet)
	la=$(cut -d' ' -f1 /proc/loadavg)
	procs=($(gw_pids "$target") "$NATS_PID" "$LB_PID" "$UP_PID")
	for p in "${procs[@]}"; do all0+=("$(ticks "$p")"); done
	t0=$(date +%s.%N)
	"$@" >"$OUT/$name.json" 2>"$TMP/$name.err" 9>&- || true
	t1=$(date +%s.%N)
	for p in "${procs[@]}"; do all1+=("$(ticks "$p")"); done
	rec "$section" "$target" "$round" loadavg "$la"
	rec "$section" "$target" "$round" busy_before_pct "$busy"
	rec "$section" "$target" "$round" wall_s "$(echo "$t1 - $t0" | bc -l)"
	local n=${#procs[@]} gw_total=0 d
	for ((i = 0; i < n; i++)); do
		d=$(echo "(${all1[i]} - ${all0[i]}) / $HZ" | bc -l)
		case $i in
		$((n - 3))) rec "$section" "$target" "$round" nats_cpu_s "$d" ;;
		$((n - 2))) rec "$section" "$target" "$round" haproxy_cpu_s "$d" ;;
		$((n - 1))) rec "$section" "$target" "$round" upstream_cpu_s "$d" ;;
		*)
			rec "$section" "$target" "$round" "node$((i + 1))_cpu_s" "$d"
			gw_total=$(echo "$gw_total + $d" | bc -l)
			;;
		esac
	done
	rec "$section" "$target" "$round" gateway_cpu_s "$gw_total"
	LAST_JSON="$OUT/$name.json"
	LAST_ERR="$TMP/$name.err"
}

# ---- 1. POST throughput at saturation --------------------------------------------------
if ! skip sat; then
	for round in $(seq "$ROUNDS"); do
		begin_lock
		order="single cluster1 cluster3"
		((round % 2 == 0)) && order="cluster3 cluster1 single"
		for target in $order; do
			log "saturation c=$SAT_CONC round $round: $target"
			measure sat "$target" "$round" env CMP_TARGET="$(url_of "$target")" CMP_CONC="$SAT_CONC" \
				CMP_DURATION="$SAT_DURATION" CMP_WARMUP=1s "$CMP" -test.run '^TestCompareClosedLoop$'
			sed -n 's/^RESULT //p' "$LAST_JSON" >"$LAST_JSON.tmp" && mv "$LAST_JSON.tmp" "$LAST_JSON"
			[[ -s $LAST_JSON ]] || { cat "$LAST_ERR" >&2; die "saturation run failed"; }
			for k in rps p50_ms p99_ms errors requests; do
				rec sat "$target" "$round" "$k" "$(jq -r ".$k" "$LAST_JSON")"
			done
		done
		end_lock
	done
fi

# ---- 2. added latency at LAT_RATE calls/s ----------------------------------------------
if ! skip lat; then
	for round in $(seq "$ROUNDS"); do
		begin_lock
		order="direct single cluster1 cluster3"
		((round % 2 == 0)) && order="direct cluster3 cluster1 single"
		for target in $order; do
			log "latency at $LAT_RATE/s round $round: $target"
			measure lat "$target" "$round" bin/loadtest run -target "$(url_of "$target")" -scenario post \
				-sessions 16 -conns 64 -rate "$LAT_RATE" -duration "$LAT_DURATION" -warmup 2s -quiet -max-errors -1 -out -
			[[ -s $LAST_JSON ]] || { cat "$LAST_ERR" >&2; die "latency run failed"; }
			for k in p50_ms p90_ms p99_ms p99_9_ms; do
				rec lat "$target" "$round" "$k" "$(jq -r ".latency.call.$k" "$LAST_JSON")"
			done
			rec lat "$target" "$round" requests "$(jq -r '.operations' "$LAST_JSON")"
			rec lat "$target" "$round" errors "$(jq -r '.error_count' "$LAST_JSON")"
		done
		end_lock
	done
fi

# ---- 3. events per second across nodes -------------------------------------------------
if ! skip events; then
	for round in $(seq "$ROUNDS"); do
		begin_lock
		order="single cluster1 cluster3"
		((round % 2 == 0)) && order="cluster3 cluster1 single"
		for target in $order; do
			log "events at $EV_RATE/s over $EV_SESSIONS streams round $round: $target"
			measure events "$target" "$round" bin/loadtest run -target "$(url_of "$target")" -scenario stream \
				-sessions "$EV_SESSIONS" -rate "$EV_RATE" -duration "$EV_DURATION" -warmup 2s -quiet -max-errors -1 -max-loss -1 -out -
			[[ -s $LAST_JSON ]] || { cat "$LAST_ERR" >&2; die "events run failed"; }
			rec events "$target" "$round" delivered "$(jq -r '.events.push.delivered' "$LAST_JSON")"
			rec events "$target" "$round" offered "$(jq -r '.events.push.offered' "$LAST_JSON")"
			rec events "$target" "$round" lost "$(jq -r '.events.push.lost' "$LAST_JSON")"
			rec events "$target" "$round" duplicated "$(jq -r '.events.push.duplicated' "$LAST_JSON")"
			rec events "$target" "$round" measured_s "$(jq -r '.measured_s' "$LAST_JSON")"
			for k in p50_ms p99_ms; do
				rec events "$target" "$round" "$k" "$(jq -r ".latency.event.$k" "$LAST_JSON")"
			done
		done
		end_lock
	done
fi

# ---- summary: medians of per-round values, and of per-round ratios against single ------
python3 - "$RUNS" >"$OUT/summary.md" <<'EOF'
import csv, statistics, sys
from collections import defaultdict
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
v = defaultdict(dict)  # (section, target, metric) -> round -> value
for r in rows:
    try:
        v[(r["section"], r["target"], r["metric"])][r["round"]] = float(r["value"])
    except ValueError:
        pass
def med(xs):
    return statistics.median(xs) if xs else float("nan")
def per_round(section, target, f):
    out = []
    rounds = set()
    for (s, t, m), d in v.items():
        if s == section and t == target:
            rounds |= set(d)
    for rd in sorted(rounds):
        try:
            out.append(f(lambda m, t=target: v[(section, t, m)][rd], rd))
        except (KeyError, ZeroDivisionError):
            pass
    return out
print("# Cluster benchmark summary\n")
print("Medians over rounds; ratios are medians of per-round ratios (same round, same machine state).\n")
targets = ["single", "cluster1", "cluster3"]
if any(k[0] == "sat" for k in v):
    print("## POST throughput at saturation (closed loop)\n")
    print("| target | rps | p50 ms | p99 ms | gateway CPU µs/request (all nodes) | per node µs/request | NATS CPU µs/request | HAProxy CPU µs/request | rps / single | CPU per request / single |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in targets:
        rps = med(per_round("sat", t, lambda g, rd: g("rps")))
        p50 = med(per_round("sat", t, lambda g, rd: g("p50_ms")))
        p99 = med(per_round("sat", t, lambda g, rd: g("p99_ms")))
        cpu = med(per_round("sat", t, lambda g, rd: 1e6 * g("gateway_cpu_s") / g("requests")))
        nodes = []
        for i in range(1, 4):
            x = per_round("sat", t, lambda g, rd, i=i: 1e6 * g(f"node{i}_cpu_s") / g("requests"))
            if x:
                nodes.append(f"{med(x):.1f}")
        nats = med(per_round("sat", t, lambda g, rd: 1e6 * g("nats_cpu_s") / g("requests")))
        hap = med(per_round("sat", t, lambda g, rd: 1e6 * g("haproxy_cpu_s") / g("requests")))
        rr = med(per_round("sat", t, lambda g, rd: g("rps") / v[("sat", "single", "rps")][rd]))
        cr = med(per_round("sat", t, lambda g, rd: (g("gateway_cpu_s") / g("requests")) / (v[("sat", "single", "gateway_cpu_s")][rd] / v[("sat", "single", "requests")][rd])))
        print(f"| {t} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {cpu:.1f} | {' / '.join(nodes)} | {nats:.1f} | {hap:.1f} | {rr:.2f} | {cr:.2f} |")
    print()
if any(k[0] == "lat" for k in v):
    print("## Added latency over direct (open loop)\n")
    print("| target | p50 ms | p99 ms | added p50 ms | added p99 ms |")
    print("|---|---|---|---|---|")
    for t in ["direct"] + targets:
        p50 = med(per_round("lat", t, lambda g, rd: g("p50_ms")))
        p99 = med(per_round("lat", t, lambda g, rd: g("p99_ms")))
        a50 = med(per_round("lat", t, lambda g, rd: g("p50_ms") - v[("lat", "direct", "p50_ms")][rd]))
        a99 = med(per_round("lat", t, lambda g, rd: g("p99_ms") - v[("lat", "direct", "p99_ms")][rd]))
        print(f"| {t} | {p50:.3f} | {p99:.3f} | {a50:+.3f} | {a99:+.3f} |")
    print()
if any(k[0] == "events" for k in v):
    print("## Events across streams\n")
    print("| target | delivered/s | lost | duplicated | p50 ms | p99 ms | gateway CPU µs/event (all nodes) | per node µs/event | NATS CPU µs/event | CPU per event / single |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in targets:
        # delivered and the CPU counts cover the whole run: the 2 s warm-up too
        rate = med(per_round("events", t, lambda g, rd: g("delivered") / (g("measured_s") + 2)))
        lost = med(per_round("events", t, lambda g, rd: g("lost")))
        dup = med(per_round("events", t, lambda g, rd: g("duplicated")))
        p50 = med(per_round("events", t, lambda g, rd: g("p50_ms")))
        p99 = med(per_round("events", t, lambda g, rd: g("p99_ms")))
        cpu = med(per_round("events", t, lambda g, rd: 1e6 * g("gateway_cpu_s") / g("delivered")))
        nodes = []
        for i in range(1, 4):
            x = per_round("events", t, lambda g, rd, i=i: 1e6 * g(f"node{i}_cpu_s") / g("delivered"))
            if x:
                nodes.append(f"{med(x):.1f}")
        nats = med(per_round("events", t, lambda g, rd: 1e6 * g("nats_cpu_s") / g("delivered")))
        cr = med(per_round("events", t, lambda g, rd: (g("gateway_cpu_s") / g("delivered")) / (v[("events", "single", "gateway_cpu_s")][rd] / v[("events", "single", "delivered")][rd])))
        print(f"| {t} | {rate:.0f} | {lost:.0f} | {dup:.0f} | {p50:.2f} | {p99:.2f} | {cpu:.1f} | {' / '.join(nodes)} | {nats:.1f} | {cr:.2f} |")
    print()
la = [float(r["value"]) for r in rows if r["metric"] == "loadavg"]
busy = [float(r["value"]) for r in rows if r["metric"] == "busy_before_pct"]
print(f"Load average before runs: median {med(la):.2f} (min {min(la):.2f}, max {max(la):.2f}); cores busy before runs: median {med(busy):.0f} %.")
EOF
cat "$OUT/summary.md"
log "results in $OUT"
