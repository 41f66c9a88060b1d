#!/usr/bin/env bash
# The journal's size over a day of refreshes, time compressed: USERS phones that refresh every hour send
# 24 x USERS REGISTERs a day; corereg-loadgen sends them as fast as corereg takes them (closed loop) to a
# corereg with `--cores CORES`, the default journal settings and a fresh data directory. The data directory's
# size is sampled every 0.2 s; at the end it prints the largest and the final size, both per live binding
# and against the bound documented in docs/persistence.md, and the snapshots and segments written.
#
#   benches/journal_day.sh [--users 1000000] [--hours 24] [--cores 2] [--port 5630] [--no-build]
#                          [-- extra corereg flags, e.g. --snapshot-ratio 2]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USERS=1000000 HOURS=24 CORES=2 PORT=5630 BUILD=1
EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --users) USERS="$2"; shift 2 ;;
    --hours) HOURS="$2"; shift 2 ;;
    --cores) CORES="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
[[ $BUILD == 1 ]] && (cd "$ROOT" && cargo build --release -p corereg -p corereg-loadgen)
BIN="$ROOT/target/release"
WORK="$(mktemp -d /tmp/corereg-journal-day.XXXXXX)"
DATA="$WORK/data"
PID="" SAMPLER=""
cleanup() {
  [[ -n "$SAMPLER" ]] && kill "$SAMPLER" 2>/dev/null || true
  [[ -n "$PID" ]] && { kill -9 "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN/corereg" --listen "127.0.0.1:$PORT" --cores "$CORES" --http none --log info --domain example.com \
  --data-dir "$DATA" --max-bindings $((USERS + USERS / 5 + 1000)) "${EXTRA[@]}" >"$WORK/corereg.log" 2>&1 &
PID=$!
until grep -q "listening on udp" "$WORK/corereg.log"; do
  kill -0 "$PID" 2>/dev/null || { cat "$WORK/corereg.log" >&2; exit 1; }
  sleep 0.05
done

( while true; do du -sb "$DATA" 2>/dev/null | cut -f1; sleep 0.2; done ) >"$WORK/sizes" &
SAMPLER=$!

COUNT=$((USERS * HOURS))
echo "$USERS phones refreshing hourly for $HOURS h: $COUNT REGISTERs"
"$BIN/corereg-loadgen" run --target "127.0.0.1:$PORT" --users "$USERS" --count "$COUNT" --domain example.com \
  --scenario refresh --concurrency 2000 --tick-us 200 | grep -E "registrations/s|failure" || true
sleep 1
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=""
final=$(du -sb "$DATA" | cut -f1)
files=$(find "$DATA" -type f -name '*.log' | wc -l)
snaps=$(find "$DATA" -type f -name '*.snap' | wc -l)
kill -TERM "$PID"
wait "$PID" 2>/dev/null || true
PID=""
max=$(sort -n "$WORK/sizes" | tail -1)
sum() { grep -oE "[ ,]$1=[0-9]+" "$WORK/corereg.log" | cut -d= -f2 | awk '{ s += $1 } END { print s + 0 }'; }
stops="snapshots written $(sum snapshots), segments started $(sum segments_started), bytes written $(sum bytes_written)"
awk -v m="$max" -v f="$final" -v u="$USERS" -v files="$files" -v snaps="$snaps" -v s="$stops" \
  'BEGIN {
     printf "journal after the day: %.1f MB (%.0f B per binding) in %d segment(s) and %d snapshot(s)\n", f / 1e6, f / u, files, snaps
     printf "largest during the day: %.1f MB (%.0f B per binding)\n", m / 1e6, m / u
     printf "over the day (all shards): %s\n", s
   }'
