#!/usr/bin/env bash
# corereg against the stateless stub under SIPp, in short alternating bursts (the machine's noise drifts
# over seconds, so short interleaved bursts hit both targets alike).
#
# Starts the stub and corereg side by side (one shard each), preloads corereg's users with corereg-loadgen
# (each SIPp REGISTER is then a second device of a registered AoR, as in the SIPp phase of e2e.sh), then
# for each round sends one SIPp burst to each target (order alternating per round), each burst to fresh
# users. A target's CPU per burst is read from /proc/<pid>/task/*/schedstat (nanoseconds, so bursts of a
# few seconds are measured exactly). Prints every burst, the medians and the median of the per-round
# ratios corereg/stub (the product target: corereg within 1.2x of the stub), with the ratios' quartiles and
# the number of rounds within 1.2x. The stub's own cost shows how busy the host was: the ratio rises with it.
#
#   benches/sipp_pairs.sh [--rounds 8] [--rate 10000] [--burst 30000] [--port 5290] [--no-build]
#                         [--bin-dir DIR]   (binaries from DIR instead of target/release, e.g. a PGO build)
#                         [--against DIR]   (A/B of two builds: the baseline is DIR/corereg, preloaded alike,
#                                            instead of the stub; the ratio is then this build / that one)
#                         [--shuffle]       (each burst's users in random order instead of in the order the
#                                            preload registered them: no neighbouring AoR data in cache)
#                         [--sipp-cpu N]    (SIPp pinned to CPU N, e.g. off the targets' CPU, as a remote
#                                            load generator would be; default: wherever the scheduler puts it)
#                         [--subscribers N] (N event streams, `curl -N .../v1/events`, attached to the corereg
#                                            under test, none to the baseline: with `--against` the same
#                                            build, the ratio is the cost of N subscribers)
#                         [--threads NAME]  (count only the threads whose name holds NAME, e.g. `shard`: the
#                                            REGISTER path alone, without the API's and the event hub's)
#                         [--cores N]       (shards of the corereg under test; default 1)
#                         [--base-cores N]  (shards of the baseline given by --against; default 1)
#   REG_ARGS="..." adds flags to the corereg under test, BASE_ARGS="..." to the baseline of --against (e.g.
#   BASE_ARGS="--data-dir none" with --against the same build: the ratio is then the journal's cost). Each
#   target runs in a directory of its own under a fresh temporary one, so the default --data-dir of each is
#   new and empty.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="${PEERS:-$ROOT/benches/peers}"
ROUNDS=8 RATE=10000 BURST=30000 PORT=5290 BUILD=1 BIN="" AGAINST="" SHUFFLE=0 SIPP_CPU="" SUBSCRIBERS=0 THREADS=""
CORES=1 BASE_CORES=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --burst) BURST="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --bin-dir) BIN="$(cd "$2" && pwd)"; BUILD=0; shift 2 ;;
    --against) AGAINST="$(cd "$2" && pwd)"; shift 2 ;;
    --shuffle) SHUFFLE=1; shift ;;
    --sipp-cpu) SIPP_CPU="$2"; shift 2 ;;
    --subscribers) SUBSCRIBERS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --cores) CORES="$2"; shift 2 ;;
    --base-cores) BASE_CORES="$2"; shift 2 ;;
    -h | --help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
[[ $BUILD == 1 ]] && (cd "$ROOT" && cargo build --release -p corereg -p corereg-loadgen)
BIN="${BIN:-$ROOT/target/release}"
PIN=""
[[ -n "$SIPP_CPU" ]] && PIN="taskset -c $SIPP_CPU"
command -v sipp >/dev/null || { echo "sipp not found (apt-get install sip-tester)" >&2; exit 1; }

WORK="$(mktemp -d /tmp/corereg-pairs.XXXXXX)"
PIDS=() SUB_PIDS=()
cleanup() {
  for p in "${SUB_PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# A build with the HTTP API gets it on an ephemeral port (two builds side by side must not both take 8080);
# extra flags for the registrar under test come from REG_ARGS (e.g. REG_ARGS="--http none").
http_args() {
  [[ " ${REG_ARGS:-} " == *" --http "* && "$1" == "$BIN/corereg" ]] && return 0
  if "$1" --help 2>/dev/null | grep -q -- '--http <'; then echo "--http 127.0.0.1:0"; fi
}
STUB_PORT=$PORT REG_PORT=$((PORT + 1))
mkdir -p "$WORK/base" "$WORK/test"
if [[ -n "$AGAINST" ]]; then
  # shellcheck disable=SC2046,SC2086
  (cd "$WORK/base" && exec "$AGAINST/corereg" --listen "127.0.0.1:$STUB_PORT" --cores "$BASE_CORES" $(http_args "$AGAINST/corereg") ${BASE_ARGS:-}) >"$WORK/stub.log" 2>&1 &
else
  (cd "$WORK/base" && exec "$BIN/corereg" --listen "127.0.0.1:$STUB_PORT" --cores 1 --stateless-stub) >"$WORK/stub.log" 2>&1 &
fi
STUB_PID=$!; PIDS+=("$STUB_PID")
# shellcheck disable=SC2046,SC2086
(cd "$WORK/test" && exec "$BIN/corereg" --listen "127.0.0.1:$REG_PORT" --cores "$CORES" $(http_args "$BIN/corereg") ${REG_ARGS:-}) >"$WORK/corereg.log" 2>&1 &
REG_PID=$!; PIDS+=("$REG_PID")
sleep 0.5
for p in "$STUB_PID" "$REG_PID"; do
  kill -0 "$p" 2>/dev/null || { echo "a target did not start:" >&2; cat "$WORK"/*.log >&2; exit 1; }
done

USERS=$((ROUNDS * BURST))
preload=("$REG_PORT")
[[ -n "$AGAINST" ]] && preload+=("$STUB_PORT")
for port in "${preload[@]}"; do
  echo "preloading the registrar on port $port with $USERS users (corereg-loadgen)..."
  "$BIN/corereg-loadgen" run --target "127.0.0.1:$port" --users "$USERS" --count "$USERS" \
    --concurrency 500 --quiet --json "$WORK/preload.json" >/dev/null
  jq -e '.failed + .timeouts == 0' "$WORK/preload.json" >/dev/null || { echo "preload had failures" >&2; exit 1; }
done

# Attached after the preload (whose 200,000 changes a second no stream is meant to follow).
if ((SUBSCRIBERS > 0)); then
  api=$(grep -o 'HTTP API on http://[0-9.:]*' "$WORK/corereg.log" | sed 's|.*http://||')
  [[ -n "$api" ]] || { echo "--subscribers: the corereg under test runs no HTTP API" >&2; exit 1; }
  for ((i = 0; i < SUBSCRIBERS; i++)); do
    curl -sN "http://$api/v1/events" -o "$WORK/events.$i" &
    SUB_PIDS+=("$!")
  done
  sleep 0.3
  echo "$SUBSCRIBERS event subscribers attached to http://$api"
fi


# CPU nanoseconds of the threads of a process (those whose name holds $THREADS, or all).
cpu_ns() {
  local t
  for t in /proc/"$1"/task/*; do
    if [[ -z $THREADS || "$(cat "$t/comm" 2>/dev/null)" == *"$THREADS"* ]]; then
      cat "$t/schedstat" 2>/dev/null || true
    fi
  done | awk '{ s += $1 } END { printf "%.0f", s }'
}

burst() { # target-port pid round -> prints "cpu_us_per_register ok failed"
  local port=$1 pid=$2 round=$3
  local first=$(((round - 1) * BURST))
  local order=cat
  [[ $SHUFFLE == 1 ]] && order=shuf
  { echo SEQUENTIAL; for ((n = first; n < first + BURST; n++)); do echo "u$n;"; done | $order; } >"$WORK/users.csv"
  local before after
  before=$(cpu_ns "$pid")
  $PIN sipp -sf "$PEERS/sipp-register.xml" -inf "$WORK/users.csv" "127.0.0.1:$port" -i 127.0.0.1 -p $((PORT + 10)) \
    -m "$BURST" -nostdin -buff_size 4194304 -r "$RATE" -rp 1000 >"$WORK/sipp.out" 2>&1 || true
  after=$(cpu_ns "$pid")
  local ok fail
  ok=$(grep -E '^ *Successful call' "$WORK/sipp.out" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); print $3}')
  fail=$(grep -E '^ *Failed call' "$WORK/sipp.out" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); print $3}')
  awk -v a="$after" -v b="$before" -v n="${ok:-0}" -v f="${fail:-?}" 'BEGIN { printf "%.3f %d %s\n", (n > 0 ? (a - b) / n / 1000 : 0), n, f }'
}

stub=() reg=() ratio=()
BASE=stub
[[ -n "$AGAINST" ]] && BASE=baseline
printf '%-6s %22s %22s %8s\n' round "$BASE us/REGISTER" "corereg us/REGISTER" ratio
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then
    read -r s sok sf < <(burst "$STUB_PORT" "$STUB_PID" "$r")
    read -r c cok cf < <(burst "$REG_PORT" "$REG_PID" "$r")
  else
    read -r c cok cf < <(burst "$REG_PORT" "$REG_PID" "$r")
    read -r s sok sf < <(burst "$STUB_PORT" "$STUB_PID" "$r")
  fi
  q=$(awk -v s="$s" -v c="$c" 'BEGIN { printf "%.3f", (s > 0 ? c / s : 0) }')
  printf '%-6s %14s (%s ok) %14s (%s ok) %8s\n' "$r" "$s" "$sok" "$c" "$cok" "$q"
  [[ "$sf" == 0 && "$cf" == 0 ]] || echo "  failed calls: stub $sf, corereg $cf" >&2
  stub+=("$s") reg+=("$c") ratio+=("$q")
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ms=$(median "${stub[@]}") mr=$(median "${reg[@]}") mq=$(median "${ratio[@]}")
# The spread of the per-round ratios: quartiles, and how many rounds met the product target (1.2x).
quartiles=$(printf '%s\n' "${ratio[@]}" | sort -g | awk '{ v[NR] = $1 } END {
  q1 = v[int((NR + 3) / 4)]; q3 = v[int((3 * NR + 3) / 4)]; printf "%s-%s", q1, q3 }')
within=$(printf '%s\n' "${ratio[@]}" | awk '$1 <= 1.2 { n++ } END { print n + 0 }')
if ((SUBSCRIBERS > 0)); then
  kill "${SUB_PIDS[@]}" 2>/dev/null || true
  # Every subscriber must have received every change (none cut off): count the events of the first.
  got=$(grep -c '^event: ' "$WORK/events.0" || true)
  echo "subscriber 0 received $got events; cut off: $(grep -c '^event: cut-off' "$WORK"/events.* | awk -F: '{ s += $2 } END { print s + 0 }')"
fi
echo "SIPp at $RATE/s, $BURST REGISTERs per burst, $ROUNDS rounds: median $BASE $ms us, corereg $mr us per REGISTER;" \
  "median of per-round ratios ${mq}x (quartiles ${quartiles}x; $within of $ROUNDS rounds at or under 1.2x)"
