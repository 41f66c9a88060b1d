#!/usr/bin/env bash
# Profile-guided optimisation (PGO) build of corereg and corereg-loadgen.
#
# A REGISTER at a moderate rate runs with cold caches (the shard sleeps between datagrams), so its cost is
# mostly code and data lines fetched from further away. With a profile of real traffic, LLVM lays the taken
# blocks of the request path out contiguously and moves the rest aside: fewer code lines per REGISTER and
# fewer instructions. Measured side by side, see README.md ("Performance") and tuning/README.md ("Profile-guided build").
#
#   1. builds instrumented binaries (target/pgo-instrumented/);
#   2. trains them over loopback with corereg-loadgen, on the paths a registrar runs in service:
#      initial registrations, refreshes, unregistrations and second devices on 1 and 2 shards (hand-offs),
#      digest authentication, and the stateless stub (so that benchmarks against it compare like with like);
#   3. merges the profile with llvm-profdata (rustup component `llvm-tools`, which matches rustc's LLVM;
#      installed with rustup when missing);
#   4. rebuilds with the profile: target/pgo/release/corereg and corereg-loadgen.
#
#   scripts/build-pgo.sh [--requests 100000] [--port 5470]
#
# Code changes make a profile stale (LLVM then ignores it for the changed functions): rebuild with this
# script after every update; it takes a few minutes (two release builds).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQUESTS=100000 PORT=5470
while [[ $# -gt 0 ]]; do
  case "$1" in
    --requests) REQUESTS="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 1 ;;
  esac
done
cd "$ROOT"

host="$(rustc -vV | sed -n 's/^host: //p')"
profdata="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata"
if [[ ! -x "$profdata" ]]; then
  command -v rustup >/dev/null || { echo "llvm-profdata not found at $profdata and no rustup to install it" >&2; exit 1; }
  echo "installing the rustup component llvm-tools (llvm-profdata matching rustc's LLVM)..."
  rustup component add llvm-tools
  [[ -x "$profdata" ]] || { echo "llvm-profdata still missing at $profdata" >&2; exit 1; }
fi

WORK="$(mktemp -d /tmp/corereg-pgo.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# `cargo ARGS...` with one more rustc flag, after any that cargo config files set (--config appends to them).
# A RUSTFLAGS in the environment replaces config flags, so the flag then joins it; it goes through
# CARGO_ENCODED_RUSTFLAGS (separated by 0x1f), so a checkout path with spaces stays one flag.
with_flag() {
  local flag=$1
  shift
  if [[ -n "${CARGO_ENCODED_RUSTFLAGS:-}" ]]; then
    CARGO_ENCODED_RUSTFLAGS="$CARGO_ENCODED_RUSTFLAGS"$'\x1f'"$flag" cargo "$@"
  elif [[ -n "${RUSTFLAGS:-}" ]]; then
    local -a flags
    read -r -a flags <<<"$RUSTFLAGS"
    flags+=("$flag")
    CARGO_ENCODED_RUSTFLAGS="$(IFS=$'\x1f'; printf '%s' "${flags[*]}")" RUSTFLAGS="" cargo "$@"
  else
    cargo --config "build.rustflags=[$(toml_string "$flag")]" "$@"
  fi
}

# `s` as a TOML basic string: quoted, with `\` and `"` escaped (a path may hold `'`, spaces or quotes).
toml_string() {
  local s=${1//\\/\\\\}
  s=${s//\"/\\\"}
  printf '"%s"' "$s"
}

echo "== 1/4 instrumented build"
with_flag "-Cprofile-generate=$WORK/raw" build --release -p corereg -p corereg-loadgen --target-dir target/pgo-instrumented
BIN=target/pgo-instrumented/release

# Starts `corereg ARGS...` on 127.0.0.1:$PORT and waits until it answers (an OPTIONS round trip).
start() {
  # With the journal, as corereg runs by default (a fresh directory each run, so the path is trained too).
  rm -rf "$WORK/corereg-data"
  "$BIN/corereg" --listen "127.0.0.1:$PORT" --http none --log warn --data-dir "$WORK/corereg-data" "$@" >"$WORK/corereg.log" 2>&1 &
  SERVER=$!
  PIDS+=("$SERVER")
  for _ in $(seq 50); do
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/corereg.log" >&2; echo "corereg did not start" >&2; exit 1; }
    "$BIN/corereg-loadgen" run --target "127.0.0.1:$PORT" --users 1 --count 1 --quiet >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "corereg did not answer on port $PORT" >&2
  exit 1
}
# Stops the server with SIGTERM (a clean exit writes its profile) and checks that it exited cleanly.
stop() {
  kill -TERM "$SERVER"
  wait "$SERVER" || { cat "$WORK/corereg.log" >&2; echo "corereg exited with an error" >&2; exit 1; }
}
# corereg-loadgen run with ARGS...; fails the build when the run had failures or timeouts.
load() {
  "$BIN/corereg-loadgen" run --target "127.0.0.1:$PORT" --quiet --json "$WORK/run.json" "$@" >/dev/null
  jq -e '.failed + .timeouts == 0' "$WORK/run.json" >/dev/null || { echo "training run failed: $*" >&2; exit 1; }
}

users=$((REQUESTS / 5))
cores=2
[[ "$(nproc)" -ge 2 ]] || cores=1
echo "== 2/4 training ($REQUESTS requests per phase)"
for c in 1 "$cores"; do
  start --cores "$c"
  load --scenario register --users "$users" --count "$users"
  # A second generator run registers another contact (its own source port) for every AoR: second devices.
  load --scenario register --users "$users" --count "$users"
  load --scenario mixed --users "$users" --count "$REQUESTS"
  load --scenario lifecycle --users "$users" --count "$REQUESTS"
  stop
done
{ echo "username,password"; for ((u = 0; u < 1000; u++)); do echo "u$u,u$u"; done; } >"$WORK/users.csv"
start --domain example.com --auth required --credentials "$WORK/users.csv"
load --scenario mixed --users 1000 --count "$((REQUESTS / 2))"
stop
start --stateless-stub
load --scenario register --users "$users" --count "$REQUESTS"
stop

echo "== 3/4 merging the profile"
"$profdata" merge -o "$WORK/corereg.profdata" "$WORK/raw"
mkdir -p target/pgo
cp "$WORK/corereg.profdata" target/pgo/corereg.profdata

echo "== 4/4 optimised build"
with_flag "-Cprofile-use=$ROOT/target/pgo/corereg.profdata" build --release -p corereg -p corereg-loadgen --target-dir target/pgo
echo "PGO binaries: target/pgo/release/corereg, target/pgo/release/corereg-loadgen"
