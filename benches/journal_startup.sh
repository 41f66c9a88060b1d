#!/usr/bin/env bash
# Start-up time with USERS bindings in the journal: corereg-loadgen registers USERS AoRs (one binding each)
# to a corereg with `--cores CORES` and a fresh data directory, corereg is killed with SIGKILL, then started
# RESTARTS times on the same directory (each time killed again once up). Each restart drops the page cache
# first when run as root (so the disk is read too), and prints the time from the spawn to the start-up line
# (every shard loaded and serving) and each shard's own load time from its "journal loaded" line.
#
#   benches/journal_startup.sh [--users 1000000] [--cores 2] [--restarts 3] [--port 5620] [--keep DIR]
#                              [--against BIN_DIR] [--no-build]
#
# --keep DIR writes the data directory there and leaves it (default: a temporary directory, removed).
# --against BIN_DIR also restarts another build's corereg (e.g. an older commit's target/release) on the same
# data, alternately with this one, for a side-by-side figure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USERS=1000000 CORES=2 RESTARTS=3 PORT=5620 BUILD=1 KEEP="" AGAINST=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --users) USERS="$2"; shift 2 ;;
    --cores) CORES="$2"; shift 2 ;;
    --restarts) RESTARTS="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --keep) KEEP="$2"; shift 2 ;;
    --against) AGAINST="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
[[ $BUILD == 1 ]] && (cd "$ROOT" && cargo build --release -p corereg -p corereg-loadgen)
BIN="$ROOT/target/release"
WORK="$(mktemp -d /tmp/corereg-journal-startup.XXXXXX)"
DATA="${KEEP:-$WORK/data}"
PID=""
cleanup() {
  [[ -n "$PID" ]] && { kill -9 "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

# Room for every binding, with a margin for the loadgen's retries.
MAX=$((USERS + USERS / 5 + 1000))
start() { # [bin dir]
  "${1:-$BIN}/corereg" --listen "127.0.0.1:$PORT" --cores "$CORES" --http none --log info --domain example.com \
    --data-dir "$DATA" --max-bindings "$MAX" >"$WORK/corereg.log" 2>&1 &
  PID=$!
}
wait_up() { # seconds to wait
  local deadline=$((SECONDS + $1))
  until grep -q "listening on udp" "$WORK/corereg.log"; do
    if ! kill -0 "$PID" 2>/dev/null; then
      cat "$WORK/corereg.log" >&2
      echo "corereg exited before start-up completed" >&2
      exit 1
    fi
    if ((SECONDS > deadline)); then
      echo "corereg not up after $1 s" >&2
      exit 1
    fi
    sleep 0.005
  done
}
kill9() { kill -9 "$PID"; wait "$PID" 2>/dev/null || true; PID=""; }

start
wait_up 60
echo "registering $USERS AoRs to $CORES shard(s)..."
"$BIN/corereg-loadgen" run --target "127.0.0.1:$PORT" --users "$USERS" --count "$USERS" --domain example.com \
  --concurrency 2000 --tick-us 200 | grep -E "attempted|registrations/s" || true
kill9
echo "journal: $(du -sh "$DATA" | cut -f1) in $(find "$DATA" -type f | wc -l) files"

restart() { # round, label, bin dir
  sync
  local cold="page cache warm"
  if [[ $(id -u) == 0 ]] && echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then cold="page cache dropped"; fi
  local t0 t1 loads
  t0=$(date +%s.%N)
  start "$3"
  wait_up 600
  t1=$(date +%s.%N)
  loads=$(grep "journal loaded" "$WORK/corereg.log" |
    sed -E 's/.*shard=([0-9]+).*bindings=([0-9]+).*took_ms=([0-9]+).*/shard \1: \2 bindings in \3 ms/' |
    paste -sd ';' -)
  awk -v a="$t0" -v b="$t1" -v r="$1" -v w="$2" -v c="$cold" -v l="$loads" \
    'BEGIN { printf "restart %d %s (%s): ready after %.2f s; %s\n", r, w, c, b - a, l }'
  kill9
}

for r in $(seq "$RESTARTS"); do
  restart "$r" "this build" "$BIN"
  if [[ -n "$AGAINST" ]]; then restart "$r" "against" "$AGAINST"; fi
done
