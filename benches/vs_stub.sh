#!/usr/bin/env bash
# corereg against the stateless stub (the same I/O shell answering bare 200s: the I/O floor), side by side:
# the same loadgen load at the same fixed rate, alternating stub and corereg ROUNDS times in one run, so the
# machine's noise hits both alike. Prints each run and the ratio of the medians of
# "target CPU seconds per 100,000 REGISTERs" (the product target: corereg within 1.2x of the stub).
#
#   benches/vs_stub.sh [--rounds 3] [--rate 20000] [--count 300000] [--cores 1] [--port 5190]
#                      [--bin-dir DIR]   (binaries of another build, e.g. target/pgo/release)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=3 RATE=20000 COUNT=300000 CORES=1 PORT=5190 BIN=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --count) COUNT="$2"; shift 2 ;;
    --cores) CORES="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --bin-dir) BIN=(--bin-dir "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
if [[ ${#BIN[@]} == 0 ]]; then
  cargo build --release -p corereg -p corereg-loadgen >/dev/null 2>&1 || cargo build --release -p corereg -p corereg-loadgen
fi
run() { # mode-flag... ; prints the target's CPU s/100k
  "$ROOT/benches/e2e.sh" --no-build "${BIN[@]}" --port "$PORT" --cores "$CORES" --rate "$RATE" --count "$COUNT" \
    --users 100000 "$@" | awk '$1 == "corereg-loadgen" { print $4, $2, $3, $6 }'
}
stub=() reg=()
for ((i = 1; i <= ROUNDS; i++)); do
  read -r s_cpu s_rate s_p99 s_fail < <(run --stub)
  read -r r_cpu r_rate r_p99 r_fail < <(run)
  printf 'round %d  stub: %s s/100k (%s/s, p99 %s us, %s failed)  corereg: %s s/100k (%s/s, p99 %s us, %s failed)\n' \
    "$i" "$s_cpu" "$s_rate" "$s_p99" "$s_fail" "$r_cpu" "$r_rate" "$r_p99" "$r_fail"
  stub+=("$s_cpu") reg+=("$r_cpu")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ms=$(median "${stub[@]}") mr=$(median "${reg[@]}")
awk -v s="$ms" -v r="$mr" -v rate="$RATE" -v cores="$CORES" 'BEGIN {
  printf "median CPU s per 100k REGISTERs at %d/s, %d core(s): stub %.3f, corereg %.3f, ratio %.2fx (%.2f us vs %.2f us per REGISTER)\n",
    rate, cores, s, r, r / s, s * 10, r * 10 }'
