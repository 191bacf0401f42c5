#!/usr/bin/env bash
# make loadtest: start the mock upstream and the gateway in front of it, run a 20 s
# scenario through the gateway, print the summary, stop both.
#
# Environment (all optional):
#   DIRECT=1        target the mock upstream directly, without a gateway
#   SCENARIO=post   post, stream, churn, resume, slow or soak
#   DURATION=20s    measured time; WARMUP=1s before it
#   RATE=2000       offered load per second (see loadtest run -h)
#   SESSIONS=64     sessions
#   LOADTEST_BIN, GATEWAY_BIN   binaries (default bin/loadtest, bin/gateway)
#   UPSTREAM_ARGS, GATEWAY_ARGS extra flags for the two servers
# Extra arguments are passed to "loadtest run" (e.g. -out result.json -report dir).
# The exit status is loadtest's: 0 pass, 1 error or loss threshold passed.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
loadtest="${LOADTEST_BIN:-$root/bin/loadtest}"
gateway="${GATEWAY_BIN:-$root/bin/gateway}"
scenario="${SCENARIO:-post}"
duration="${DURATION:-20s}"
warmup="${WARMUP:-1s}"
rate="${RATE:-2000}"
sessions="${SESSIONS:-64}"

tmp="$(mktemp -d)"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in the background and sets $url to the URL it prints
# as its first stdout line ("listening on http://<host:port>/mcp").
start() {
	local name="$1"
	shift
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
	pids+=("$!")
	local pid="$!" line="" i
	for ((i = 0; i < 100; i++)); do
		if [[ "$(wc -l <"$tmp/$name.out")" -ge 1 ]]; then
			line="$(head -n 1 "$tmp/$name.out")"
			break
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "run.sh: $name exited early:" >&2
			cat "$tmp/$name.err" >&2
			exit 3
		fi
		sleep 0.1
	done
	if [[ "$line" != "listening on http://"* ]]; then
		echo "run.sh: $name did not print its URL (got: '$line')" >&2
		cat "$tmp/$name.err" >&2
		exit 3
	fi
	url="${line#listening on }"
	out_file="$tmp/$name.out"
}

for bin in "$loadtest"; do
	[[ -x "$bin" ]] || { echo "run.sh: $bin not built (make build)" >&2; exit 3; }
done

# shellcheck disable=SC2086
start upstream "$loadtest" upstream -listen 127.0.0.1:0 ${UPSTREAM_ARGS:-}
upstream="$url"
echo "upstream: $upstream"
target="$upstream"
metrics_args=()
if [[ -z "${DIRECT:-}" ]]; then
	[[ -x "$gateway" ]] || { echo "run.sh: $gateway not built (make build), or set DIRECT=1" >&2; exit 3; }
	# shellcheck disable=SC2086
	start gateway "$gateway" -listen 127.0.0.1:0 -admin-listen 127.0.0.1:0 -upstream "$upstream" ${GATEWAY_ARGS:-}
	target="$url"
	echo "gateway:  $target"
	# The gateway's metrics are on its admin listener (second stdout line), where the
	# soak scenario samples them.
	for ((i = 0; i < 100; i++)); do
		admin="$(sed -n '2s/^admin on //p' "$out_file")"
		[[ -n "$admin" ]] && break
		sleep 0.1
	done
	[[ -n "$admin" ]] || { echo "run.sh: the gateway did not print its admin address" >&2; exit 3; }
	echo "admin:    $admin"
	metrics_args=(-metrics-url "$admin/metrics")
fi

set +e
"$loadtest" run -target "$target" -scenario "$scenario" -duration "$duration" -warmup "$warmup" \
	-rate "$rate" -sessions "$sessions" "${metrics_args[@]}" "$@"
status=$?
set -e
exit "$status"
