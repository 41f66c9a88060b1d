#!/usr/bin/env bash
# A/B of two builds of examples/cold_handle: whether a change makes a cold REGISTER cheaper in the core.
#
# The machine's noise moves whole runs by up to 2x, so raw cycle counts of separate runs do not compare. Each
# run also times the stateless stub's handler, interleaved with the core's, so the ratio core / stub within one
# run cancels most of that noise. Runs alternate A, B, A, B...; per run this prints the stub's median cycles and
# the ratios cold / stub and code-warmed / stub (see examples/cold_handle.rs), then the sorted cold / stub
# ratios of each build and in how many pairs B's is lower. A change is real when B wins nearly every pair.
# Caveat: the TSC ticks in steps of ~60 cycles here and the stub's median is only ~15 steps, so a build
# change that also touches the stub's code (compiler flags) can move the ratio by a step's worth (~6%). For
# such changes, also check the raw cold medians of adjacent runs and the ratio of means (not quantised).
#
#   cargo build --release --example cold_handle && cp target/release/examples/cold_handle /tmp/ch-a
#   (change, rebuild) && cp target/release/examples/cold_handle /tmp/ch-b
#   benches/cold_ab.sh /tmp/ch-a /tmp/ch-b [pairs=8] [requests=20000]
set -euo pipefail
A=${1:?usage: cold_ab.sh BIN_A BIN_B [pairs] [requests]} B=${2:?second binary}
PAIRS=${3:-8} REQUESTS=${4:-20000}
runs="$(mktemp /tmp/cold_ab.XXXXXX)"
trap 'rm -f "$runs"' EXIT
for ((i = 0; i < PAIRS; i++)); do
  for x in A B; do
    bin=$A
    [[ $x == B ]] && bin=$B
    "$bin" "$REQUESTS" 100 | awk -v x=$x '
      /^  stub / { s = $3; sm = $5 } /core, cold / { c = $4; cm = $6 } /code warmed/ { w = $5 }
      END { printf "%s stub %d cold/stub %.3f codewarm/stub %.3f cold %d mean-ratio %.3f\n", x, s, c / s, w / s, c, cm / sm }'
  done
done | tee "$runs"
for x in A B; do
  echo "$x cold/stub sorted: $(awk -v x=$x '$1 == x { print $5 }' "$runs" | sort -g | tr '\n' ' ')"
done
# Pairs in which B's value of field F (of A's line; B's line follows it, 11 fields on) is lower than A's.
wins() { paste - - <"$runs" | awk -v f="$1" '$(f + 11) < $f' | wc -l; }
echo "pairs where B's cold/stub is lower: $(wins 5) of $PAIRS"
echo "pairs where B's raw cold median is lower: $(wins 9) of $PAIRS"
echo "pairs where B's ratio of means is lower: $(wins 11) of $PAIRS"
