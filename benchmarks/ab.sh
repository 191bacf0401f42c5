#!/usr/bin/env bash
# Two builds of the gateway side by side: OLD and NEW (git revisions, built into a
# temporary directory), both in front of one mock upstream (bin/loadtest upstream with
# UPSTREAM_FLAGS), and ROUNDS rounds of the open-loop harness (bin/loadtest run -scenario
# post, 16 sessions over 64 connections, RATE calls/s for DURATION after a 2 s warm-up)
# against each in turn, the order swapping every round. Per run: the gateway's CPU per
# call (from /proc/PID/stat around the whole run, warm-up included, over the calls made
# in it), p50 and p99; then the per-round NEW / OLD ratios and their median.
# SCENARIO=stream measures events instead: SESSIONS standalone streams, the mock
# pushing RATE events/s over them, BURST per upstream write; per run the gateway's
# CPU per event (over the events pushed, warm-up included) and the events' p50 / p99.
#
#   make build && benchmarks/ab.sh OLD NEW
#   UPSTREAM_FLAGS="-answer-sse -answer-delay 200us" ROUNDS=6 benchmarks/ab.sh bcb34ba HEAD
#   SCENARIO=stream SESSIONS=100 RATE=64000 BURST=64 benchmarks/ab.sh 55b567e HEAD
set -euo pipefail
cd "$(dirname "$0")/.."

[[ $# == 2 ]] || { echo "usage: benchmarks/ab.sh OLD_REV NEW_REV" >&2; exit 2; }
ROUNDS=${ROUNDS:-6}
SCENARIO=${SCENARIO:-post}
RATE=${RATE:-2000}
SESSIONS=${SESSIONS:-100}
BURST=${BURST:-1}
DURATION=${DURATION:-8s}
UPSTREAM_FLAGS=${UPSTREAM_FLAGS:--answer-sse}
LOCK=${LOCK:-/tmp/mcpgate-bench.lock}

die() { echo "ab.sh: $*" >&2; exit 1; }
[[ -x bin/loadtest ]] || die "bin/loadtest missing: run make build first"
command -v jq >/dev/null || die "jq not found (apt-get install jq)"
[[ $DURATION =~ ^[0-9]+s$ ]] || die "DURATION must be whole seconds (8s)"
[[ $SCENARIO == post || $SCENARIO == stream ]] || die "SCENARIO must be post or stream"

TMP=$(mktemp -d)
PIDS=()
WORKTREES=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for w in "${WORKTREES[@]}"; do git worktree remove --force "$w" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

# build NAME REV: bin/gateway of REV into $TMP/NAME.
build() {
	local dir="$TMP/src-$1"
	git worktree add -q --detach "$dir" "$2"
	WORKTREES+=("$dir")
	(cd "$dir" && go build -o "$TMP/$1" ./cmd/gateway)
}
build old "$1"
build new "$2"
OLD_DESC=$(git rev-parse --short "$1") NEW_DESC=$(git rev-parse --short "$2")

# start NAME cmd...: run it, wait for its "listening on URL" line; sets STARTED_PID, STARTED_URL.
start() {
	local name=$1; shift
	"$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
	STARTED_PID=$!
	PIDS+=("$STARTED_PID")
	for _ in $(seq 100); do
		STARTED_URL=$(head -n1 "$TMP/$name.out" 2>/dev/null | sed -n 's/^listening on //p')
		[[ -n $STARTED_URL ]] && return 0
		kill -0 "$STARTED_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$TMP/$name.err" >&2
	die "$name did not start"
}
# shellcheck disable=SC2086 # UPSTREAM_FLAGS is a list of flags
start upstream bin/loadtest upstream -listen 127.0.0.1:0 $UPSTREAM_FLAGS
UP_URL=$STARTED_URL
start gw-old "$TMP/old" -listen 127.0.0.1:0 -admin-listen "" -upstream "$UP_URL" -max-sessions 200000 -log-level warn
OLD_PID=$STARTED_PID OLD_URL=$STARTED_URL
start gw-new "$TMP/new" -listen 127.0.0.1:0 -admin-listen "" -upstream "$UP_URL" -max-sessions 200000 -log-level warn
NEW_PID=$STARTED_PID NEW_URL=$STARTED_URL

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
SECS=$((${DURATION%s} + 2))

# run NAME URL PID: one run; prints its table row and records its CPU per call (event).
declare -A CPU
run() {
	local name=$1 url=$2 pid=$3 round=$4 p0 p1 la
	la=$(cut -d' ' -f1 /proc/loadavg)
	p0=$(ticks "$pid")
	if [[ $SCENARIO == post ]]; then
		set -- -scenario post -sessions 16 -conns 64
	else
		set -- -scenario stream -sessions "$SESSIONS" -burst "$BURST" -max-loss -1
	fi
	bin/loadtest run -target "$url" "$@" -rate "$RATE" -duration "$DURATION" \
		-warmup 2s -quiet -max-errors -1 -out - >"$TMP/run.json" 2>"$TMP/run.err" || { cat "$TMP/run.err" >&2; die "run failed"; }
	p1=$(ticks "$pid")
	local ach p50 p99 errs us units
	ach=$(jq -r '.achieved_rate' "$TMP/run.json")
	errs=$(jq -r '.error_count' "$TMP/run.json")
	if [[ $SCENARIO == post ]]; then
		p50=$(jq -r '.latency.call.p50_ms' "$TMP/run.json")
		p99=$(jq -r '.latency.call.p99_ms' "$TMP/run.json")
		units=$(echo "$ach * $SECS" | bc -l)
	else
		p50=$(jq -r '.latency.event.p50_ms' "$TMP/run.json")
		p99=$(jq -r '.latency.event.p99_ms' "$TMP/run.json")
		units=$(jq -r '.events.push.offered' "$TMP/run.json")
	fi
	us=$(echo "($p1 - $p0) * 1000000 / $HZ / $units" | bc -l)
	CPU[$name$round]=$us
	printf '| %d | %s | %.0f | %.1f | %s | %s | %s | %s |\n' "$round" "$name" "$ach" "$us" "$p50" "$p99" "$errs" "$la"
}

if [[ $SCENARIO == post ]]; then
	echo "old $OLD_DESC, new $NEW_DESC; upstream: bin/loadtest upstream $UPSTREAM_FLAGS; $RATE calls/s for $DURATION (+2 s warm-up), $ROUNDS rounds"
	echo
	echo "| round | build | calls/s | gateway CPU µs/call | p50 ms | p99 ms | errors | load avg |"
else
	echo "old $OLD_DESC, new $NEW_DESC; upstream: bin/loadtest upstream $UPSTREAM_FLAGS; $SESSIONS streams, $RATE events/s, $BURST per upstream write, for $DURATION (+2 s warm-up), $ROUNDS rounds"
	echo
	echo "| round | build | events/s | gateway CPU µs/event | p50 ms | p99 ms | errors | load avg |"
fi
echo "|---|---|---|---|---|---|---|---|"
ratios=()
for round in $(seq "$ROUNDS"); do
	exec 9>"$LOCK"
	flock 9
	if ((round % 2)); then
		run old "$OLD_URL" "$OLD_PID" "$round"; run new "$NEW_URL" "$NEW_PID" "$round"
	else
		run new "$NEW_URL" "$NEW_PID" "$round"; run old "$OLD_URL" "$OLD_PID" "$round"
	fi
	flock -u 9
	exec 9>&-
	ratios+=("$(echo "${CPU[new$round]} / ${CPU[old$round]}" | bc -l)")
done
echo
printf 'per-round new / old CPU per %s: %s\n' "$([[ $SCENARIO == post ]] && echo call || echo event)" "$(printf '%.3f ' "${ratios[@]}")"
printf 'median: %.3f\n' "$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')"
