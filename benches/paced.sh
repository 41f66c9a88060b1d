#!/usr/bin/env bash
# CPU per REGISTER and latency at a steady rate below saturation, for several corereg configurations side by
# side: the bundled loadgen sends at --rate from one socket (evenly paced, as many phones behind an SBC
# look), each configuration in turn, for --duration seconds per round.
#
# Each configuration is a line "NAME|CORES|FLAGS" on stdin. Every target runs with --data-dir none and
# --http none unless FLAGS says otherwise, is preloaded with the users, and gets the same bursts; a burst's
# CPU is read from /proc/<pid>/task/*/schedstat (all the process' threads). Prints one line per burst:
# name, µs of CPU per REGISTER, answered, failed, and the loadgen's p50 and p99 latency in µs.
#
#   printf '%s\n' "off1|1|--coalesce-us 0" "on1|1|" "on2|2|" | benches/paced.sh [--rounds 3] [--rate 10000]
#       [--duration 5] [--users 50000] [--port 5600] [--no-build] [--bin-dir DIR]
set -euo pipefail
ROUNDS=3 RATE=10000 DURATION=5 USERS=50000 PORT=5600 BUILD=1
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --users) USERS="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --bin-dir) BIN="$(cd "$2" && pwd)"; BUILD=0; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ $BUILD == 1 ]] && (cd "$ROOT" && cargo build --release -p corereg -p corereg-loadgen)
mapfile -t CONFS
[[ ${#CONFS[@]} -gt 0 ]] || { echo "no configurations on stdin (NAME|CORES|FLAGS lines)" >&2; exit 2; }
WORK="$(mktemp -d /tmp/corereg-paced.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

declare -A PID PORTS
i=0
for conf in "${CONFS[@]}"; do
  IFS='|' read -r name cores flags <<<"$conf"
  port=$((PORT + i)); i=$((i + 1))
  defaults=()
  [[ "$flags" == *--data-dir* ]] || defaults+=(--data-dir none)
  [[ "$flags" == *--http* ]] || defaults+=(--http none)
  # shellcheck disable=SC2086
  "$BIN/corereg" --listen "127.0.0.1:$port" --cores "$cores" "${defaults[@]}" $flags >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!; PORTS[$name]=$port; PIDS+=("$!")
done
sleep 0.6
for conf in "${CONFS[@]}"; do
  IFS='|' read -r name _ <<<"$conf"
  kill -0 "${PID[$name]}" 2>/dev/null || { cat "$WORK/$name.log" >&2; exit 1; }
  "$BIN/corereg-loadgen" run --target "127.0.0.1:${PORTS[$name]}" --users "$USERS" --count "$USERS" \
    --concurrency 500 --quiet >/dev/null
done

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }
for ((round = 1; round <= ROUNDS; round++)); do
  for conf in "${CONFS[@]}"; do
    IFS='|' read -r name _ <<<"$conf"
    before=$(cpu_ns "${PID[$name]}")
    "$BIN/corereg-loadgen" run --target "127.0.0.1:${PORTS[$name]}" --users "$USERS" --rate "$RATE" \
      --duration "$DURATION" --threads 1 --quiet --json "$WORK/run.json" >/dev/null || true
    after=$(cpu_ns "${PID[$name]}")
    jq -r --arg n "$name" --argjson ns "$((after - before))" \
      '"\($n) \(($ns / 1000 / ([.succeeded, 1] | max)) * 1000 | floor / 1000) us/REGISTER ok=\(.succeeded) failed=\(.failed + .timeouts) p50_us=\(.latency_us.p50) p99_us=\(.latency_us.p99)"' \
      "$WORK/run.json"
  done
done
