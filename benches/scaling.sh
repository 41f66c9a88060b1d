#!/usr/bin/env bash
# What a second shard costs: corereg with --cores 1 and --cores N side by side under the same load, in
# short alternating bursts, from one SIPp socket (one 4-tuple, as one SBC) or from the bundled loadgen.
#
# For each burst and target: CPU µs per REGISTER (all the process' threads, from schedstat), the CPU the
# whole machine spent polling in its idle loop (cpuidle's POLL state, e.g. guest halt polling), each shard's
# share of the CPU and of the datagrams (`datagrams_in`, from GET /v1/stats), context switches per
# datagram (voluntary + involuntary, all threads, from /proc/<pid>/task/*/status), handed-off requests, the
# batches they went in and the doorbells rung, and 503s. Optional: system calls per datagram from
# `strace -c -f` attached to each target for one extra burst (strace slows a target several-fold: its CPU
# figures are not used).
#
#   benches/scaling.sh [--rounds 4] [--rate 10000] [--burst 30000] [--cores 2] [--port 5390]
#                      [--no-build] [--bin-dir DIR] (binaries from DIR, not built; default: builds
#                      the release binaries into $CARGO_TARGET_DIR or target/) [--strace]
#                      [--loadgen CONCURRENCY] (closed loop from the loadgen's sockets instead of SIPp)
#                      [--pair] (adds a share-nothing reference, SIPp only: two corereg processes of one shard
#                      each, pinned to CPUs 0 and 1, each sent half of the burst at half the rate by its own
#                      SIPp at the same time: no handoff, a perfect split, the same clumps per millisecond)
#   REG_ARGS="..." adds flags to both targets (e.g. REG_ARGS="--receive-spread flow").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=4 RATE=10000 BURST=30000 CORES=2 PORT=5390 BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release" STRACE=0 LOADGEN="" BUILD=1 PAIR=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --burst) BURST="$2"; shift 2 ;;
    --cores) CORES="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --bin-dir) BIN="$(cd "$2" && pwd)"; BUILD=0; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --strace) STRACE=1; shift ;;
    --loadgen) LOADGEN="$2"; shift 2 ;;
    --pair) PAIR=1; shift ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 1 ;;
  esac
done
[[ $BUILD == 1 ]] && (cd "$ROOT" && cargo build --release -p corereg -p corereg-loadgen)
command -v sipp >/dev/null || [[ -n $LOADGEN ]] || { echo "sipp not found" >&2; exit 1; }
WORK="$(mktemp -d /tmp/corereg-scaling.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

declare -A PID API
start() { # name cores port [corereg args]
  # Each target its own journal directory, unless REG_ARGS names one (e.g. --data-dir none).
  local data=(--data-dir "$WORK/$1.data")
  [[ "${REG_ARGS:-}" == *--data-dir* ]] && data=()
  # shellcheck disable=SC2086
  "$BIN/corereg" --listen "127.0.0.1:$3" --cores "$2" --http 127.0.0.1:0 "${data[@]}" ${REG_ARGS:-} "${@:4}" \
    >"$WORK/$1.log" 2>&1 &
  PID[$1]=$!; PIDS+=("$!")
  sleep 0.5
  API[$1]=$(grep -o 'HTTP API on http://[0-9.:]*' "$WORK/$1.log" | sed 's|.*http://||')
  [[ -n "${API[$1]}" ]] || { cat "$WORK/$1.log" >&2; exit 1; }
}
ONE_PORT=$PORT N_PORT=$((PORT + 1))
start one 1 "$ONE_PORT"
start many "$CORES" "$N_PORT"
TARGETS=("$ONE_PORT" "$N_PORT")
if ((PAIR)); then
  [[ -z $LOADGEN ]] || { echo "--pair needs SIPp (not --loadgen)" >&2; exit 1; }
  A_PORT=$((PORT + 2)) B_PORT=$((PORT + 3))
  start pairA 1 "$A_PORT" --cpu-list 0
  start pairB 1 "$B_PORT" --cpu-list 1
  TARGETS+=("$A_PORT" "$B_PORT")
fi

# Each burst goes to fresh users: a stride of two bursts per round (three with --pair).
STRIDE=$((2 + PAIR))
USERS=$((STRIDE * ROUNDS * BURST))
for port in "${TARGETS[@]}"; do
  echo "preloading port $port with $USERS users..."
  "$BIN/corereg-loadgen" run --target "127.0.0.1:$port" --users "$USERS" --count "$USERS" \
    --concurrency 500 --quiet --json "$WORK/preload.json" >/dev/null
  jq -e '.failed + .timeouts == 0' "$WORK/preload.json" >/dev/null || { echo "preload failed" >&2; exit 1; }
done

cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'; }
# Per-shard CPU ns, "shard0=NS shard1=NS ..." (glommio names the executor threads shardN).
shard_ns() {
  local t
  for t in /proc/"$1"/task/*; do
    local name; name=$(cat "$t/comm" 2>/dev/null || true)
    # An `if`, not `&&`: a last task that is no shard (an io_uring worker) must not fail the pipeline.
    if [[ $name == *shard* ]]; then echo "$name/${t##*/} $(awk '{print $1}' "$t/schedstat")"; fi
  done | sort
}
# Microseconds every CPU spent polling in its idle loop (cpuidle's POLL state, e.g. under guest halt polling):
# CPU time no process is charged for. The whole machine's, so SIPp's CPU counts too.
poll_us() { cat /sys/devices/system/cpu/cpu*/cpuidle/state0/time 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
ctxt() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }'; }
stats() { curl -s "http://${API[$1]}/v1/stats" | jq -c '[.shards[] | {id, datagrams_in, handed_off, overloaded_503, handoff_batches: (.handoff_batches // 0), doorbell_rings: (.doorbell_rings // 0)}]'; }

load() { # port round [first burst rate sipp_port tag]
  local port=$1 round=$2 first
  first=${3:-$((round * BURST))}
  local BURST=${4:-$BURST} RATE=${5:-$RATE} sport=${6:-$((PORT + 10))} tag=${7:-}
  if [[ -n $LOADGEN ]]; then
    "$BIN/corereg-loadgen" run --target "127.0.0.1:$port" --users "$BURST" --first-user "$first" --count "$BURST" \
      --concurrency "$LOADGEN" --threads 2 --tick-us 200 --quiet --json "$WORK/lg.json" >/dev/null || true
    jq -r '"\(.succeeded) \(.failed + .timeouts) throughput=\(.succeeded / .elapsed_s | floor)/s 503s=\(.failed_by_status["503"] // 0) loadgen_cpu_us/REGISTER=\(.cpu_us_per_transaction // "?")"' "$WORK/lg.json"
  else
    { echo SEQUENTIAL; for ((n = first; n < first + BURST; n++)); do echo "u$n;"; done; } >"$WORK/users$tag.csv"
    sipp -sf "$ROOT/benches/peers/sipp-register.xml" -inf "$WORK/users$tag.csv" "127.0.0.1:$port" -i 127.0.0.1 \
      -p "$sport" -m "$BURST" -nostdin -buff_size 4194304 -r "$RATE" -rp 1000 >"$WORK/sipp$tag.out" 2>&1 || true
    local ok fail
    ok=$(grep -E '^ *Successful call' "$WORK/sipp$tag.out" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); print $3}')
    fail=$(grep -E '^ *Failed call' "$WORK/sipp$tag.out" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); print $3}')
    echo "${ok:-0} ${fail:-?}"
  fi
}

burst() { # name port round
  local name=$1 port=$2 round=$3 pid=${PID[$1]}
  local c0 x0 d0 s0 c1 x1 d1 s1
  local i0 i1
  c0=$(cpu_ns "$pid"); x0=$(ctxt "$pid"); s0=$(shard_ns "$pid"); d0=$(stats "$name"); i0=$(poll_us)
  read -r ok fail extra < <(load "$port" "$round")
  c1=$(cpu_ns "$pid"); x1=$(ctxt "$pid"); s1=$(shard_ns "$pid"); d1=$(stats "$name"); i1=$(poll_us)
  local dgrams
  dgrams=$(jq -n --argjson a "$d0" --argjson b "$d1" '[range($b|length)] | map($b[.].datagrams_in - $a[.].datagrams_in) | add')
  local split
  split=$(paste <(echo "$s0") <(echo "$s1") | awk '{ d[NR] = $4 - $2; n[NR] = $1; t += $4 - $2 } END { for (i = 1; i <= NR; i++) printf "%s%s=%.0f%%", (i > 1 ? "," : ""), n[i], (t > 0 ? 100 * d[i] / t : 0) }')
  local per_shard
  per_shard=$(jq -n -c --argjson a "$d0" --argjson b "$d1" '[range($b|length)] | map({in: ($b[.].datagrams_in - $a[.].datagrams_in), off: ($b[.].handed_off - $a[.].handed_off), batches: ($b[.].handoff_batches - $a[.].handoff_batches), rings: ($b[.].doorbell_rings - $a[.].doorbell_rings), shed: ($b[.].overloaded_503 - $a[.].overloaded_503)})')
  awk -v c="$((c1 - c0))" -v n="$ok" -v x="$((x1 - x0))" -v d="$dgrams" -v name="$name" -v f="$fail" -v s="$split" -v p="$per_shard" -v e="${extra:-}" -v i="$((i1 - i0))" \
    'BEGIN { printf "%-5s %8.3f us/REGISTER  %6.3f ctxsw/datagram  idle_poll=%.3f us/REGISTER  ok=%s failed=%s cpu_split=%s %s %s\n", name, (n > 0 ? c / n / 1000 : 0), (d > 0 ? x / d : 0), (n > 0 ? i / n : 0), n, f, s, p, e }'
}

# The share-nothing reference: both processes loaded at once, each with half of the burst at half the rate.
pair_burst() { # round
  local first=$(($1 * BURST)) half=$((BURST / 2)) a=${PID[pairA]} b=${PID[pairB]}
  local c0 x0 c1 x1 okA okB
  local i0 i1
  c0=$(($(cpu_ns "$a") + $(cpu_ns "$b"))); x0=$(($(ctxt "$a") + $(ctxt "$b"))); i0=$(poll_us)
  load "$B_PORT" "$1" $((first + half)) "$half" $((RATE / 2)) $((PORT + 11)) B >"$WORK/pairB.result" &
  local other=$!
  read -r okA _ < <(load "$A_PORT" "$1" "$first" "$half" $((RATE / 2)) $((PORT + 10)) A)
  wait "$other"; read -r okB _ <"$WORK/pairB.result"
  c1=$(($(cpu_ns "$a") + $(cpu_ns "$b"))); x1=$(($(ctxt "$a") + $(ctxt "$b"))); i1=$(poll_us)
  awk -v c="$((c1 - c0))" -v n="$((okA + okB))" -v x="$((x1 - x0))" -v a="$okA" -v b="$okB" -v i="$((i1 - i0))" \
    'BEGIN { printf "pair  %8.3f us/REGISTER  %6.3f ctxsw/datagram  idle_poll=%.3f us/REGISTER  ok=%s (%s + %s), two processes of one shard\n", (n > 0 ? c / n / 1000 : 0), (n > 0 ? x / n : 0), (n > 0 ? i / n : 0), n, a, b }'
}

for ((r = 0; r < ROUNDS; r++)); do
  if ((r % 2)); then
    burst many "$N_PORT" $((STRIDE * r)); burst one "$ONE_PORT" $((STRIDE * r + 1))
  else
    burst one "$ONE_PORT" $((STRIDE * r)); burst many "$N_PORT" $((STRIDE * r + 1))
  fi
  if ((PAIR)); then pair_burst $((STRIDE * r + 2)); fi
done

if ((STRACE)); then
  for name in one many; do
    port=$ONE_PORT extra=0; [[ $name == many ]] && port=$N_PORT extra=1
    d0=$(stats "$name")
    strace -c -f -p "${PID[$name]}" -o "$WORK/strace.$name" &
    st=$!
    sleep 0.5
    load "$port" $((STRIDE * ROUNDS + extra)) >/dev/null
    kill -INT "$st"; wait "$st" 2>/dev/null || true
    d1=$(stats "$name")
    dg=$(jq -n --argjson a "$d0" --argjson b "$d1" '[range($b|length)] | map($b[.].datagrams_in - $a[.].datagrams_in) | add')
    calls=$(awk '$NF == "total" { print $(NF-2) }' "$WORK/strace.$name")
    echo "$name: $calls system calls for $dg datagrams under strace: $(awk -v c="$calls" -v d="$dg" 'BEGIN { printf "%.2f", c / d }') per datagram"
    grep -E "^ *[0-9]" "$WORK/strace.$name" | sort -k4 -n -r | head -14 | sed "s/^/    /"
  done
fi
