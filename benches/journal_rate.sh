#!/usr/bin/env bash
# CPU per REGISTER with the journal against memory only, at a rate SIPp cannot reach: corereg-loadgen drives
# one corereg (`--cores 1`) at RATE REGISTERs/s for DURATION seconds, alternately with `--data-dir none` and
# with a fresh data directory and `--fsync MODE`, ROUNDS times. Each run prints corereg's CPU per REGISTER
# (all its threads, from /proc/<pid>/task/*/schedstat) and the loadgen's p50 and p99 latency. The loadgen
# shares the machine: at high rates both are saturated, so compare rounds side by side, not with other runs.
#
#   benches/journal_rate.sh [--rate 100000] [--duration 5] [--rounds 4] [--fsync always] [--port 5610]
#                           [--no-build]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RATE=100000 DURATION=5 ROUNDS=4 FSYNC=always PORT=5610 BUILD=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rate) RATE="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --fsync) FSYNC="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
[[ $BUILD == 1 ]] && (cd "$ROOT" && cargo build --release -p corereg -p corereg-loadgen)
BIN="$ROOT/target/release"
WORK="$(mktemp -d /tmp/corereg-journal-rate.XXXXXX)"
PID=""
cleanup() {
  [[ -n "$PID" ]] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ s += $1 } END { printf "%.0f", s }'; }

run() { # label, data-dir, extra flags...
  local label=$1 data=$2
  shift 2
  "$BIN/corereg" --listen "127.0.0.1:$PORT" --cores 1 --http none --log warn --domain example.com \
    --data-dir "$data" "$@" >"$WORK/corereg.log" 2>&1 &
  PID=$!
  sleep 0.5
  local before after out
  before=$(cpu_ns "$PID")
  out=$("$BIN/corereg-loadgen" run --target "127.0.0.1:$PORT" --users 2000000 --domain example.com \
    --rate "$RATE" --duration "$DURATION" 2>&1)
  after=$(cpu_ns "$PID")
  kill "$PID"; wait "$PID" 2>/dev/null || true
  PID=""
  local ok p50 p99
  ok=$(awk '/attempted/ { print $4 }' <<<"$out")
  p50=$(awk '/latency us/ { print $4 }' <<<"$out")
  p99=$(awk '/latency us/ { print $8 }' <<<"$out")
  awk -v a="$after" -v b="$before" -v n="$ok" -v l="$label" -v p50="$p50" -v p99="$p99" \
    'BEGIN { printf "%-18s %8d ok  %6.2f us/REGISTER  latency p50 %s us, p99 %s us\n", l, n, (a - b) / n / 1000, p50, p99 }'
}

echo "corereg-loadgen at $RATE/s for ${DURATION}s, $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
  run "none" none
  rm -rf "$WORK/data"
  run "--fsync $FSYNC" "$WORK/data" --fsync "$FSYNC"
done
