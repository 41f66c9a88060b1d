#!/usr/bin/env bash
# HTTP lookups per second: corereg registers USERS AoRs (corereg-loadgen), then wrk asks
# GET /v1/aors/u<random>%40example.com over keep-alive connections and reports requests/s and the latency
# distribution (p50, p75, p90, p99). Also prints the CPU corereg took per lookup (all its threads: the API's
# and the shards'), read from /proc/<pid>/task/*/schedstat. wrk shares the machine with corereg: say so
# when quoting the figure.
#
#   benches/api_lookup.sh [--users 10000] [--cores N] [--http-threads 2] [--connections 64] [--threads 2]
#                         [--duration 10] [--port 5390] [--no-build] [--bin-dir DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USERS=10000 CORES="" HTTP_THREADS=2 CONNECTIONS=64 THREADS=2 DURATION=10 PORT=5390 BUILD=1 BIN=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --users) USERS="$2"; shift 2 ;;
    --cores) CORES="$2"; shift 2 ;;
    --http-threads) HTTP_THREADS="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --bin-dir) BIN="$(cd "$2" && pwd)"; BUILD=0; shift 2 ;;
    -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }
[[ $BUILD == 1 ]] && (cd "$ROOT" && cargo build --release -p corereg -p corereg-loadgen)
BIN="${BIN:-$ROOT/target/release}"

WORK="$(mktemp -d /tmp/corereg-lookup.XXXXXX)"
PID=""
cleanup() {
  [[ -n "$PID" ]] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

args=(--listen "127.0.0.1:$PORT" --http "127.0.0.1:$((PORT + 1))" --http-threads "$HTTP_THREADS" --log warn --data-dir none)
[[ -n "$CORES" ]] && args+=(--cores "$CORES")
"$BIN/corereg" "${args[@]}" >"$WORK/corereg.log" 2>&1 &
PID=$!
for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$((PORT + 1))/healthz" >/dev/null && break
  sleep 0.1
done
echo "registering $USERS users..."
"$BIN/corereg-loadgen" run --target "127.0.0.1:$PORT" --users "$USERS" --count "$USERS" \
  --concurrency 500 --quiet --json "$WORK/preload.json" >/dev/null
jq -e '.failed + .timeouts == 0' "$WORK/preload.json" >/dev/null || { echo "preload had failures" >&2; exit 1; }
curl -sf "http://127.0.0.1:$((PORT + 1))/v1/aors/u0%40example.com" >/dev/null || {
  echo "u0 cannot be looked up" >&2; exit 1; }

cat >"$WORK/lookup.lua" <<EOF
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/v1/aors/u" .. math.random(0, $USERS - 1) .. "%40example.com")
end
done = function(summary, latency, requests)
  io.write(string.format("non-2xx or errors: %d\n", summary.errors.status + summary.errors.connect
    + summary.errors.read + summary.errors.write + summary.errors.timeout))
  io.write(string.format("latency p50 %.0f us, p99 %.0f us, p99.9 %.0f us\n",
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
EOF
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }'; }
before=$(cpu_ns "$PID")
wrk -t "$THREADS" -c "$CONNECTIONS" -d "${DURATION}s" --latency -s "$WORK/lookup.lua" \
  "http://127.0.0.1:$((PORT + 1))" | tee "$WORK/wrk.out"
after=$(cpu_ns "$PID")
requests=$(awk '/requests in/ { print $1 }' "$WORK/wrk.out")
awk -v a="$after" -v b="$before" -v n="$requests" \
  'BEGIN { printf "corereg CPU per lookup: %.2f us (%d lookups)\n", (a - b) / n / 1000, n }'
