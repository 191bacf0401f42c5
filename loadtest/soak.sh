#!/usr/bin/env bash
# make soak: the gateway, with authentication and limits on, in front of the mock
# upstream for SOAK_DURATION (10 minutes by default) of mixed load: tools/call echo and
# pushed events over GET streams that are cut and resumed with Last-Event-ID, session
# churn, and hostile raw-TCP requests (malformed framing, duplicate headers, rebinding
# Host and Origin, bad bodies, heads and bodies cut short). The target's goroutines,
# open files and RSS are sampled every SAMPLE_EVERY; the summary ends with their slopes
# per minute after the warm-up. Results go to results/soak-<UTC time>/ (git-ignored).
#
# Environment (all optional):
#   SOAK_DURATION=10m  RATE=1000 (calls + events per second)  SESSIONS=64
#   CUT_EVERY=10s      mean interval between cuts of each GET stream
#   HOSTILE_RATE=20    hostile requests per second
#   SAMPLE_EVERY=5s    WARMUP=30s
#   GATEWAY_ARGS       extra gateway flags
# Exit status: loadtest's (0 pass; 1 error or loss threshold passed).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="${OUT:-$root/results/soak-$stamp}"
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

token="soak-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s soak\n' "$token" >"$tmp/tokens"
export MCPGATE_LOADTEST_AUTHORIZATION="Bearer $token"

{
	echo "date_utc: $(date -u +%FT%TZ)"
	echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -n1), nproc $(nproc)"
	echo "go: $(go version 2>/dev/null || echo unknown)"
	echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet 2>/dev/null || echo ' (dirty tree)')"
	echo "loadavg_before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$out/env.txt"

GATEWAY_ARGS="-auth-tokens-file $tmp/tokens -rate-limit 100000 -max-sessions-per-principal 100000 -evict-idle -log-level warn ${GATEWAY_ARGS:-}" \
SCENARIO=soak DURATION="${SOAK_DURATION:-10m}" WARMUP="${WARMUP:-30s}" RATE="${RATE:-1000}" SESSIONS="${SESSIONS:-64}" \
	"$root/loadtest/run.sh" -cut-every "${CUT_EVERY:-10s}" -hostile-rate "${HOSTILE_RATE:-20}" \
	-sample-every "${SAMPLE_EVERY:-5s}" -quiet -out "$out/result.json" -report "$out/report" | tee "$out/summary.txt"
status=${PIPESTATUS[0]}
echo "loadavg_after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/env.txt"
echo "results in $out"
exit "$status"
