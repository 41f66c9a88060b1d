#!/usr/bin/env bash
# End-to-end REGISTER benchmark over loopback.
#
# Starts a registrar (corereg by default), offers a fixed count of REGISTERs with corereg-loadgen,
# and prints registrations per second, p99 latency, the registrar's CPU seconds per 100,000
# REGISTERs (from /proc/<pid>/stat utime+stime of the process and its children, before and after)
# and the load generator's own CPU per REGISTER.
#
# Targets:
#   (default)                     target/release/corereg --listen 127.0.0.1:PORT [--cores N]
#   --stub                        the same binary with --stateless-stub (I/O shell, bare 200s)
#   --responder                   corereg-loadgen responder (the loadgen's own ceiling)
#   --target HOST:PORT --pid PID  an already running registrar (e.g. Kamailio), not started here
# Digest authentication:
#   --auth                        corereg runs with --auth required --credentials <generated CSV of --users
#                                 users, password pw-<user>> and the loadgen answers the 401s
#                                 (--password-pattern 'pw-{user}'); compare with a run without --auth.
# Load generators:
#   corereg-loadgen always; with --sipp also SIPp (peers/sipp-register.xml), same count and target,
#   one after the other in the same run, so their rates and CPU costs are side by side.
#
# Examples:
#   benches/e2e.sh --count 500000 --concurrency 2000
#   benches/e2e.sh --stub --cores 2 --count 500000
#   benches/e2e.sh --auth --count 200000 --concurrency 1000
#   benches/e2e.sh --responder --sipp --count 400000 --rate 40000
#   benches/e2e.sh --target 127.0.0.1:5070 --pid "$KAMAILIO_PID" --rate 18000 --count 360000
#   LOADGEN=/tmp/old-loadgen benches/e2e.sh --responder --no-build   (generator binary to measure;
#                                 the responder stays target/release/corereg-loadgen)
#   benches/e2e.sh --bin-dir target/pgo/release   (binaries of another build, e.g. scripts/build-pgo.sh)
# Arguments after -- go to `corereg-loadgen run` (e.g. -- --tick-us 200 or -- --no-gso).
# COREREG_ARGS="..." in the environment: more flags for corereg (e.g. COREREG_ARGS="--recv-batch 1").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="${PEERS:-$ROOT/benches/peers}"
PORT=5090
CORES=""
USERS=100000
COUNT=500000
RATE=""
CONCURRENCY=1000
THREADS=1
MODE=corereg
TARGET=""
TARGET_PID=""
SIPP=0
BUILD=1
AUTH=0
EXTRA=()
BIN="$ROOT/target/release"

usage() { sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --cores) CORES="$2"; shift 2 ;;
    --users) USERS="$2"; shift 2 ;;
    --count) COUNT="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --stub) MODE=stub; shift ;;
    --responder) MODE=responder; shift ;;
    --target) TARGET="$2"; MODE=external; shift 2 ;;
    --pid) TARGET_PID="$2"; shift 2 ;;
    --sipp) SIPP=1; shift ;;
    --auth) AUTH=1; shift ;;
    --no-build) BUILD=0; shift ;;
    --bin-dir) BIN="$(cd "$2" && pwd)"; BUILD=0; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 1 ;;
  esac
done

RESPONDER="$BIN/corereg-loadgen"
LOADGEN="${LOADGEN:-$RESPONDER}"
COREREG="$BIN/corereg"
if [[ $BUILD == 1 ]]; then
  if [[ $MODE == corereg || $MODE == stub ]]; then
    (cd "$ROOT" && cargo build --release -p corereg -p corereg-loadgen)
  else
    (cd "$ROOT" && cargo build --release -p corereg-loadgen)
  fi
fi

STARTED_PID=""
WORK="$(mktemp -d /tmp/corereg-e2e.XXXXXX)"
cleanup() {
  if [[ -n "$STARTED_PID" ]]; then kill "$STARTED_PID" 2>/dev/null || true; wait "$STARTED_PID" 2>/dev/null || true; fi
  [[ -n "${KEEP:-}" ]] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT

case "$MODE" in
  corereg|stub)
    args=(--listen "127.0.0.1:$PORT")
    [[ -n "$CORES" ]] && args+=(--cores "$CORES")
    [[ $MODE == stub ]] && args+=(--stateless-stub)
    if [[ $AUTH == 1 ]]; then
      [[ $MODE == corereg ]] || { echo "--auth needs the corereg target" >&2; exit 1; }
      # The loadgen's users: u<n>@example.com (its defaults), password pw-u<n>.
      { echo "username,realm,password"; for ((n = 0; n < USERS; n++)); do echo "u$n,example.com,pw-u$n"; done; } >"$WORK/users.csv"
      args+=(--auth required --credentials "$WORK/users.csv")
    fi
    # COREREG_ARGS: more corereg flags, split on spaces (e.g. COREREG_ARGS="--recv-batch 1").
    read -r -a more <<<"${COREREG_ARGS:-}"
    args+=("${more[@]}")
    # Memory only, as the peers it is compared with run, unless COREREG_ARGS names a --data-dir.
    [[ " ${COREREG_ARGS:-} " == *" --data-dir "* ]] || args+=(--data-dir none)
    "$COREREG" "${args[@]}" >"$WORK/target.log" 2>&1 &
    STARTED_PID=$!; TARGET_PID=$STARTED_PID; TARGET="127.0.0.1:$PORT" ;;
  responder)
    "$RESPONDER" responder --listen "127.0.0.1:$PORT" --threads "${CORES:-1}" >"$WORK/target.log" 2>&1 &
    STARTED_PID=$!; TARGET_PID=$STARTED_PID; TARGET="127.0.0.1:$PORT" ;;
  external)
    [[ -n "$TARGET_PID" ]] || { echo "--target needs --pid PID of the registrar" >&2; exit 1; } ;;
esac
# With --auth, also past the start-up second (nonces issued in it are re-challenged once, see auth::replay).
if [[ $AUTH == 1 ]]; then sleep 1.2; else sleep 0.5; fi
kill -0 "$TARGET_PID" 2>/dev/null || { echo "target process $TARGET_PID is not running" >&2; cat "$WORK/target.log" >&2 || true; exit 1; }

TCK=$(getconf CLK_TCK)
# utime+stime in clock ticks of a process and all its descendants (Kamailio forks workers).
tree_ticks() {
  local pid=$1 total=0 p
  local pids=("$pid")
  local i=0
  while [[ $i -lt ${#pids[@]} ]]; do
    for c in $(cat /proc/"${pids[$i]}"/task/*/children 2>/dev/null); do pids+=("$c"); done
    i=$((i + 1))
  done
  for p in "${pids[@]}"; do
    if [[ -r /proc/$p/stat ]]; then
      total=$((total + $(sed 's/.*) //' /proc/"$p"/stat | awk '{print $12 + $13}')))
    fi
  done
  echo "$total"
}
per100k() { awk -v t="$1" -v k="$TCK" -v n="$2" 'BEGIN { if (n > 0) printf "%.3f", t / k / n * 100000; else print "n/a" }'; }

echo "target $TARGET ($MODE$( [[ $AUTH == 1 ]] && echo ", auth required"), pid $TARGET_PID)  users $USERS  count $COUNT  $( [[ -n "$RATE" ]] && echo "rate $RATE/s" || echo "concurrency $CONCURRENCY")"
printf '%-16s %12s %10s %18s %18s %10s\n' generator "REGISTER/s" "p99 us" "target cpu s/100k" "generator us/REG" failures

# --- corereg-loadgen --------------------------------------------------------------------------
lg_args=(run --target "$TARGET" --users "$USERS" --count "$COUNT" --threads "$THREADS" --quiet
         --json "$WORK/loadgen.json" --max-failure-rate 1.0)
if [[ -n "$RATE" ]]; then lg_args+=(--rate "$RATE"); else lg_args+=(--concurrency "$CONCURRENCY"); fi
[[ $AUTH == 1 ]] && lg_args+=(--password-pattern 'pw-{user}')
before=$(tree_ticks "$TARGET_PID")
"$LOADGEN" "${lg_args[@]}" "${EXTRA[@]}"
after=$(tree_ticks "$TARGET_PID")
read -r rate p99 ok failed cpu_us challenges < <(jq -r '[.registrations_per_s, .latency_us.p99, .succeeded, (.failed + .timeouts), .cpu_us_per_transaction, .challenges] | @tsv' "$WORK/loadgen.json")
printf '%-16s %12.0f %10s %18s %18.2f %10s\n' corereg-loadgen "$rate" "$p99" "$(per100k $((after - before)) "$ok")" "$cpu_us" "$failed"
[[ $AUTH == 1 ]] && echo "  (digest: $challenges 401 challenges answered; a REGISTER/s here is one authenticated registration, two round trips when the nonce is not reused)"
# How the loadgen's requests left (older builds do not report it).
read -r path gso_per gso_why < <(jq -r '[.send_path // "sendmmsg", (.gso_segments_per_send // 0), (.gso_fallback // "")] | @tsv' "$WORK/loadgen.json")
if [[ -n "${gso_why:-}" ]]; then
  echo "  corereg-loadgen send path: $path ($gso_why)"
elif [[ $path == udp-gso ]]; then
  printf '  corereg-loadgen send path: udp-gso, %.1f datagrams per GSO send\n' "$gso_per"
else
  echo "  corereg-loadgen send path: $path"
fi

# --- SIPp, same target and count ---------------------------------------------------------------
if [[ $SIPP == 1 && $AUTH == 1 ]]; then
  echo "sipp: skipped with --auth (peers/sipp-register.xml does not authenticate)" >&2
elif [[ $SIPP == 1 ]]; then
  { echo SEQUENTIAL; for ((n = 0; n < USERS; n++)); do echo "u$n;"; done; } >"$WORK/users.csv"
  if [[ -n "$RATE" ]]; then
    sipp_args=(-sf "$PEERS/sipp-register.xml" -inf "$WORK/users.csv" "$TARGET" -i 127.0.0.1 -p $((PORT + 10))
               -m "$COUNT" -nostdin -buff_size 4194304 -r "$RATE" -rp 1000)
  else
    # SIPp has no closed loop: a very high rate capped by -l calls in flight approximates one.
    sipp_args=(-sf "$PEERS/sipp-register.xml" -inf "$WORK/users.csv" "$TARGET" -i 127.0.0.1 -p $((PORT + 10))
               -m "$COUNT" -nostdin -buff_size 4194304 -r 1000000 -rp 1000 -l "$CONCURRENCY")
  fi
  # SIPp's startup (reading the injection file) is not load: measure it with a one-call run and
  # subtract its CPU.
  /usr/bin/time -f "%U %S" -o "$WORK/sipp0.time" sipp -sf "$PEERS/sipp-register.xml" -inf "$WORK/users.csv" \
    "$TARGET" -i 127.0.0.1 -p $((PORT + 10)) -m 1 -nostdin >/dev/null 2>&1 || true
  read -r su0 ss0 < <(tail -1 "$WORK/sipp0.time")
  before=$(tree_ticks "$TARGET_PID")
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$WORK/sipp.time" sipp "${sipp_args[@]}" >"$WORK/sipp.out" 2>&1 || true
  end=$(date +%s.%N)
  after=$(tree_ticks "$TARGET_PID")
  # SIPp prints its final statistics screen; successful calls are the "Successful call" row.
  sipp_ok=$(grep -E '^ *Successful call' "$WORK/sipp.out" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); print $3}')
  sipp_fail=$(grep -E '^ *Failed call' "$WORK/sipp.out" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); print $3}')
  sipp_ok=${sipp_ok:-0}
  # Cumulative "Call Rate" of SIPp's final screen: calls per second over its own run time.
  sipp_rate=$(grep -E '^ *Call Rate' "$WORK/sipp.out" | tail -1 | awk -F'|' '{print $3}' | awk '{print $1}')
  read -r su ss < <(tail -1 "$WORK/sipp.time")
  su=$(awk -v a="$su" -v b="$su0" 'BEGIN { print a - b }'); ss=$(awk -v a="$ss" -v b="$ss0" 'BEGIN { print a - b }')
  printf '%-16s %12.0f %10s %18s %18.2f %10s\n' sipp \
    "${sipp_rate:-$(awk -v n="$sipp_ok" -v a="$start" -v b="$end" 'BEGIN { print n / (b - a) }')}" "n/a" \
    "$(per100k $((after - before)) "$sipp_ok")" \
    "$(awk -v u="$su" -v s="$ss" -v n="$sipp_ok" 'BEGIN { if (n > 0) print (u + s) * 1e6 / n; else print 0 }')" \
    "${sipp_fail:-?}"
fi
