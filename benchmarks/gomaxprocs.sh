#!/usr/bin/env bash
# GOMAXPROCS of the gateway, side by side: two gateways in front of the same reference
# everything-server (stateful), one with GOMAXPROCS=$PROCS_A, one with $PROCS_B, and
# ROUNDS rounds of the closed-loop client of compare.sh (tools/call test_simple_text,
# 16 workers, 5 s) against each in turn, the order swapping every round. Per run: calls/s,
# p99 and the gateway's CPU per request (from /proc/PID/stat around the run).
#
#   make build tools && benchmarks/gomaxprocs.sh        (PROCS_A=1 PROCS_B=2 ROUNDS=4)
set -euo pipefail
cd "$(dirname "$0")/.."

PROCS_A=${PROCS_A:-1}
PROCS_B=${PROCS_B:-2}
ROUNDS=${ROUNDS:-4}
EVERYTHING=${EVERYTHING:-.cache/bin/everything-server-v1.8.0}

die() { echo "gomaxprocs.sh: $*" >&2; exit 1; }
[[ -x bin/gateway ]] || die "bin/gateway missing: run make build first"
[[ -x $EVERYTHING ]] || die "$EVERYTHING missing: run make tools first"
command -v jq >/dev/null || die "jq not found (apt-get install jq)"

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

go test -c -tags bench -o "$TMP/compare.test" ./benchmarks >/dev/null
port=$(CMP_FREE_PORT=1 "$TMP/compare.test" -test.run '^TestCompareFreePort$' | sed -n 's/^PORT //p')
"$EVERYTHING" -http="127.0.0.1:$port" -stateless=false >"$TMP/everything.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
	curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/mcp" && break
	sleep 0.1
done

# gateway NAME PROCS: start one; sets GW_PID and GW_URL.
gateway() {
	env GOMAXPROCS="$2" bin/gateway -listen 127.0.0.1:0 -admin-listen "" -upstream "http://127.0.0.1:$port/mcp" \
		-log-level warn >"$TMP/$1.out" 2>"$TMP/$1.err" &
	GW_PID=$!
	PIDS+=("$GW_PID")
	for _ in $(seq 100); do
		GW_URL=$(head -n1 "$TMP/$1.out" 2>/dev/null | sed -n 's/^listening on //p')
		[[ -n $GW_URL ]] && return 0
		sleep 0.1
	done
	cat "$TMP/$1.err" >&2
	die "gateway $1 did not start"
}
gateway a "$PROCS_A"; A_PID=$GW_PID A_URL=$GW_URL
gateway b "$PROCS_B"; B_PID=$GW_PID B_URL=$GW_URL

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
echo "| round | GOMAXPROCS | calls/s | p99 ms | gateway CPU µs/request | load avg |"
echo "|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
	order="a b"; ((r % 2 == 0)) && order="b a"
	for w in $order; do
		if [[ $w == a ]]; then pid=$A_PID url=$A_URL procs=$PROCS_A; else pid=$B_PID url=$B_URL procs=$PROCS_B; fi
		la=$(cut -d' ' -f1 /proc/loadavg)
		t0=$(ticks "$pid")
		res=$(CMP_TARGET="$url" CMP_TOOL=test_simple_text CMP_CONC=16 CMP_DURATION=5s \
			"$TMP/compare.test" -test.run '^TestCompareClosedLoop$' | sed -n 's/^RESULT //p')
		t1=$(ticks "$pid")
		[[ -n $res ]] || die "run failed"
		us=$(echo "($t1 - $t0) * 1000000 / $HZ / $(jq .requests <<<"$res")" | bc -l)
		printf '| %s | %s | %.0f | %.2f | %.1f | %s |\n' "$r" "$procs" "$(jq .rps <<<"$res")" "$(jq .p99_ms <<<"$res")" "$us" "$la"
	done
done
