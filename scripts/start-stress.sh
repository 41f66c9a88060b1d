#!/usr/bin/env bash
# Start-up stress: starts PAR corereg processes at once (two shards each, loopback, ephemeral ports), ROUNDS
# times, and counts those that do not log their start-up line within 8 s. A hung one is kept running (its pid
# is printed, with its log file) so that it can be inspected: `gdb -p PID -batch -ex "thread apply all bt"`.
# This is how the glommio start-up hang fixed in 046a6e2 was found and its fix checked (0 in 1,200 starts).
#
#   scripts/start-stress.sh [--rounds 150] [--par 8] [--bin target/debug/corereg] [--log corereg=debug]
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=150 PAR=8 BIN="$ROOT/target/debug/corereg" LOG=info
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --par) PAR="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    --log) LOG="$2"; shift 2 ;;
    -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
[[ -x "$BIN" ]] || { echo "no corereg binary at $BIN (cargo build first)" >&2; exit 1; }
fails=0
for ((round = 1; round <= ROUNDS; round++)); do
  pids=() logs=()
  for ((k = 0; k < PAR; k++)); do
    log=$(mktemp /tmp/corereg-start.XXXXXX)
    logs+=("$log")
    # Memory only and the API on an ephemeral port: the instances run at once, and a data directory or a
    # port belongs to one process.
    "$BIN" --listen 127.0.0.1:0 --cores 2 --log "$LOG" --data-dir none --http 127.0.0.1:0 >"$log" 2>&1 &
    pids+=($!)
  done
  for ((i = 0; i < 80; i++)); do
    started=0
    for log in "${logs[@]}"; do grep -q "listening on udp" "$log" && started=$((started + 1)); done
    [[ $started == "$PAR" ]] && break
    sleep 0.1
  done
  stopped=()
  for k in "${!logs[@]}"; do
    if grep -q "listening on udp" "${logs[$k]}"; then
      kill "${pids[$k]}" 2>/dev/null
      stopped+=("${pids[$k]}")
      rm -f "${logs[$k]}"
    else
      fails=$((fails + 1))
      echo "round $round: pid ${pids[$k]} did not start within 8 s; kept running, log ${logs[$k]}"
    fi
  done
  # Only the stopped ones: a hung one is left running for inspection.
  [[ ${#stopped[@]} -gt 0 ]] && wait "${stopped[@]}" 2>/dev/null
done
echo "$((ROUNDS * PAR)) starts, $fails did not start"
[[ $fails == 0 ]]
